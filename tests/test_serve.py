"""derain serve over plain HTTP: the page and its files, real photos through the queue, bad uploads."""
from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import derain
from derain.errors import DerainError
from derain.files.imageio import read_image, read_uint8_rgb
from derain.inference.restore import InferenceOptions, count_tiles
from derain.serve import ServeConfig, make_server
from derain.serve.catalog import ModelChoice, build_catalog
from derain.weights import DEFAULT

PHOTO = "data/real-rain/96.jpg"  # 745x466, streaks over a dark wall on both sides of two faces
# Small tiles so that this 0.35 MP photo runs in several tiles and the progress counts them.
TILED = InferenceOptions(tile=256, tile_overlap=32, tile_threshold=300_000)
MAX_UPLOAD = 3_000_000
MAX_PIXELS = 2_000_000


class Server:
    """A running server on a free port, and a tiny HTTP client for it."""

    def __init__(self, config: ServeConfig, catalog=None) -> None:
        self.httpd = make_server(config, catalog=catalog)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None, **kw) -> tuple[int, dict]:
        status, headers, data = self.request(method, path, body, **kw)
        assert headers["Content-Type"] == "application/json", (status, data[:200])
        return status, json.loads(data)

    def upload(self, data: bytes, name: str = "photo.jpg", model: str | None = None) -> tuple[int, dict]:
        query = f"/api/jobs?name={name}" + (f"&model={model}" if model else "")
        return self.json("POST", query, data)

    def wait(self, job_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.json("GET", f"/api/jobs/{job_id}")
            assert status == 200
            if job["state"] in ("done", "failed"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


@pytest.fixture(scope="module")
def server():
    srv = Server(ServeConfig(port=0, options=TILED, max_upload_bytes=MAX_UPLOAD, max_pixels=MAX_PIXELS))
    yield srv
    srv.close()


def png_bytes(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(out, format="PNG")
    return out.getvalue()


# --- the page ------------------------------------------------------------------------------------------------
def test_page_and_its_files_come_from_the_server_itself(server):
    status, headers, page = server.request("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    html = page.decode()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/app.js" in refs and "/static/style.css" in refs
    for ref in refs:
        if ref.startswith("data:"):  # inline (the empty favicon)
            continue
        assert ref.startswith("/static/"), f"{ref} is not served by the app (offline use needs every file local)"
        status, headers, body = server.request("GET", ref)
        assert status == 200 and len(body) > 100, ref
        assert not re.search(rb"https?://", body), f"{ref} refers to another site"


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/..%2fapp.py", "/static/.hidden.js",
                                  "/static/catalog.py", "/nothing"])
def test_only_the_page_files_are_served(server, path):
    status, body = server.json("GET", path)
    assert status == 404 and "not found" in body["error"]


def test_config_offers_the_bundled_model_and_the_limits(server):
    status, config = server.json("GET", "/api/config")
    assert status == 200
    assert config["default_model"] == DEFAULT
    # The default first, then the other bundled models (the specialist, the CPU student).
    assert [m["name"] for m in config["models"]] == [DEFAULT, "fastderain-rain100l", "fastderain-student"]
    assert config["models"][0]["tasks"] == []  # not an all-in-one model: the page hides the task menu
    assert config["max_upload_bytes"] == MAX_UPLOAD and config["max_megapixels"] == MAX_PIXELS / 1e6


def test_a_request_for_another_host_name_is_refused(server):
    status, body = server.json("GET", "/api/config", headers={"Host": "attacker.example:80"})
    assert status == 403 and "localhost" in body["error"]


# --- a real photo through the queue ------------------------------------------------------------------------
def test_real_photo_is_derained_at_full_size_with_tile_progress(server, shared):
    path = shared(PHOTO)
    status, job = server.upload(path.read_bytes(), name=path.name)
    assert status == 202 and job["state"] in ("queued", "running") and (job["width"], job["height"]) == (745, 466)
    done = server.wait(job["id"])
    assert done["state"] == "done", done["error"]
    expected_tiles = count_tiles(466, 745, TILED, 16)
    assert expected_tiles > 1
    assert done["tiles_total"] == done["tiles_done"] == expected_tiles

    status, headers, png = server.request("GET", f"/api/jobs/{job['id']}/result?download=1")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert "96-derained.png" in headers["Content-Disposition"]
    result = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float64)
    rainy = read_uint8_rgb(path).astype(np.float64)
    assert result.shape == rainy.shape

    # The same as the Python API with the same options (the page adds nothing and loses nothing).
    model, name = derain.load_model()
    direct = derain.derain(read_image(path).pixels, model, name, tile=256, tile_overlap=32, tile_threshold=300_000)
    assert np.abs(result - np.rint(direct * 255)).max() <= 1

    # Rain was removed where it falls (the wall behind), more than on the faces in front (the general default
    # also lifts the veil over the whole photo, faces included). Judged on the photo restored whole: in 256-pixel
    # tiles each tile guesses its own veil, which moves the faces by a few grey levels with the tiles' places.
    assert (result - rainy)[0:320, 560:745].__abs__().mean() > 1.5
    whole = np.rint(derain.derain(read_image(path).pixels, model, name, tile=0) * 255)
    diff = np.abs(whole - rainy).mean(axis=2)
    rain, faces = diff[0:320, 560:745].mean(), diff[100:250, 250:420].mean()
    assert rain > 1.5 and rain > 1.5 * faces, (rain, faces)

    status, headers, preview = server.request("GET", f"/api/jobs/{job['id']}/input")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(preview)).size == (745, 466)


def test_sixteen_bit_photo_gives_a_sixteen_bit_result(server):
    import cv2

    ramp = np.linspace(0, 65535, 96 * 64 * 3).reshape(64, 96, 3).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", ramp)
    assert ok
    status, job = server.upload(encoded.tobytes(), name="ramp16.png")
    assert status == 202 and server.wait(job["id"])["state"] == "done"
    status, _, png = server.request("GET", f"/api/jobs/{job['id']}/result")
    result = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert status == 200 and result.dtype == np.uint16 and result.shape == (64, 96, 3)
    assert len(np.unique(result)) > 256  # finer steps than 8 bits could hold


def test_nothing_is_left_in_the_temporary_folder(server, shared):
    def leftovers():
        return sorted(p.name for p in Path(tempfile.gettempdir()).glob("derain-serve-*"))

    before = leftovers()
    status, job = server.upload(shared(PHOTO).read_bytes())
    assert status == 202 and server.wait(job["id"])["state"] == "done"
    assert leftovers() == before


# --- bad uploads: a clear message, a 4xx status, and the server goes on --------------------------------------
def _bad_uploads(photo: bytes) -> dict:
    return {
        "not an image": (b"%PDF-1.4 this is a document, not a photo\n" * 20, 415, "not an image"),
        "truncated": (photo[: len(photo) // 2], 422, "truncated"),
        "empty": (b"", 400, "empty"),
        "too many bytes": (photo + bytes(MAX_UPLOAD), 413, "accepts uploads up to 3 MB"),
        "too many pixels": (png_bytes(2000, 1200), 413, "2.4 megapixels"),
        "png data ends early": (_short_png(1400, 1400, rows=60), 422, "ends after about 60 of 1400 rows"),
        "animation": (_animated_gif(), 415, "animation (2 frames)"),
    }


def _short_png(width: int, height: int, rows: int) -> bytes:
    """A well-formed PNG (chunks and checksums right) whose image data holds only ``rows`` rows."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    scanlines = b"".join(b"\0" + bytes(3 * width) for _ in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b""))


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 24), colour) for colour in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


@pytest.mark.parametrize("case", ["not an image", "truncated", "empty", "too many bytes", "too many pixels",
                                  "png data ends early", "animation"])
def test_bad_upload_gets_a_clear_json_error_and_the_server_keeps_serving(server, shared, case):
    photo = shared(PHOTO).read_bytes()
    body, status_expected, words = _bad_uploads(photo)[case]
    jobs_before = server.json("GET", "/api/jobs")[1]["jobs"]
    status, reply = server.upload(body)
    assert status == status_expected, reply
    assert words in reply["error"], reply["error"]
    assert "\n" not in reply["error"]
    status, jobs = server.json("GET", "/api/jobs")
    assert status == 200 and jobs["jobs"] == jobs_before  # nothing was queued for it
    status, job = server.upload(photo)  # and a good photo right after is accepted
    assert status == 202
    assert server.wait(job["id"])["state"] == "done"


def test_transparent_upload_keeps_its_alpha(server, shared):
    rgb = np.asarray(Image.open(shared(PHOTO)).convert("RGB").crop((0, 0, 96, 64)))
    alpha = np.tile(np.linspace(0, 255, 96).astype(np.uint8), (64, 1))
    upload = io.BytesIO()
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(upload, format="PNG")
    status, job = server.upload(upload.getvalue(), name="logo.png")
    assert status == 202 and server.wait(job["id"])["state"] == "done"
    for fmt, mode in (("png", "RGBA"), ("webp", "RGBA"), ("jpeg", "RGB")):
        status, _, data = server.request("GET", f"/api/jobs/{job['id']}/result?format={fmt}")
        result = Image.open(io.BytesIO(data))
        assert status == 200 and result.mode == mode, (fmt, result.mode)
        if fmt == "png":
            assert np.array_equal(np.asarray(result)[..., 3], alpha)


def test_unknown_model_or_task_is_refused_by_name(server, shared):
    photo = shared(PHOTO).read_bytes()
    status, reply = server.upload(photo, model="restormer")
    assert status == 400 and "unknown model 'restormer'" in reply["error"] and "fastderain" in reply["error"]
    status, reply = server.json("POST", f"/api/jobs?model={DEFAULT}&task=dehaze", photo)
    assert status == 400 and "no task 'dehaze'" in reply["error"]


def test_unknown_job_and_unfinished_result(server):
    status, reply = server.json("GET", "/api/jobs/99999")
    assert status == 404 and "no job 99999" in reply["error"]
    status, reply = server.json("DELETE", "/api/jobs/99999")
    assert status == 404


# --- a failing photo does not stop the others ----------------------------------------------------------------
class BrokenNet(nn.Module):
    """A network that fails on every image, as a model that runs out of memory would."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("simulated failure inside the network")


def test_a_failed_photo_shows_its_message_and_the_queue_goes_on(shared):
    photo = shared(PHOTO).read_bytes()
    catalog = build_catalog([], torch.device("cpu"))
    catalog["broken"] = ModelChoice(key="broken", network="fastderain", weights="-", model=BrokenNet(),
                                    size_multiple=16)
    srv = Server(ServeConfig(port=0, keep=2), catalog=catalog)
    try:
        ids = [srv.upload(photo, name=f"{i}.jpg", model=m)[1]["id"] for i, m in
               enumerate([DEFAULT, "broken", DEFAULT])]
        first, failed, last = (srv.wait(i) for i in ids)
        assert first["state"] == "done" and last["state"] == "done"
        assert failed["state"] == "failed"
        assert "simulated failure inside the network" in failed["error"]
        status, reply = srv.json("GET", f"/api/jobs/{failed['id']}/result")
        assert status == 409 and "failed" in reply["error"]
        # keep=2: the oldest finished photo was forgotten to bound the memory; the newest are still there.
        assert srv.json("GET", f"/api/jobs/{ids[0]}")[0] == 404
        assert srv.json("GET", f"/api/jobs/{ids[2]}")[0] == 200
        assert srv.json("DELETE", f"/api/jobs/{ids[2]}")[0] == 200
        assert srv.json("GET", f"/api/jobs/{ids[2]}")[0] == 404
        # The synchronous endpoint answers a broken model's failure as a JSON 500 with its message.
        status, reply = srv.json("POST", "/api/derain?model=broken", png_bytes(32, 24))
        assert status == 500 and "simulated failure inside the network" in reply["error"]
    finally:
        srv.close()


# --- the command line ---------------------------------------------------------------------------------------
def test_derain_serve_command_serves_the_page_until_interrupted():
    # A shell runs background jobs with SIGINT ignored and children inherit that (then Ctrl+C never arrives):
    # give the server the default disposition a terminal user's Ctrl+C meets.
    proc = subprocess.Popen([sys.executable, "-m", "derain.cli", "serve", "--port", "0", "--max-upload-mb", "5"],
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        match = re.search(r"serving on http://localhost:(\d+)/ \(models: " + DEFAULT + r", fastderain-rain100l, fastderain-student; "
                          r"uploads up to 5 MB", line)
        assert match, f"unexpected first line {line!r}"
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=30)
        conn.request("GET", "/api/config")
        assert json.loads(conn.getresponse().read())["max_upload_bytes"] == 5_000_000
        conn.close()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        assert code == 0, (code, proc.stderr.read()[-2000:])  # what the server said, should it ever abort
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_port_in_use_is_a_clear_error(server):
    with pytest.raises(DerainError, match=f"cannot listen on 127.0.0.1:{server.port}.*choose another port"):
        make_server(ServeConfig(port=server.port))


def test_derain_serve_reports_a_missing_checkpoint_on_one_line():
    result = subprocess.run([sys.executable, "-m", "derain.cli", "serve", "--port", "0", "--weights",
                             "restormer=/nonexistent/deraining.pth"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "derain: error: checkpoint not found: /nonexistent/deraining.pth"


# --- cancelling: a deleted running job stops between tiles and frees the queue -------------------------------
class SlowNet(nn.Module):
    """An identity network that takes a while per tile and counts its calls (on the class: the queue runs a
    prepared deep copy of the module)."""

    calls = 0

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        time.sleep(0.03)
        return x.clone()


def test_deleting_a_running_job_cancels_it_between_tiles_and_frees_the_queue():
    # Tiles of 64 with an overlap of 16 cut a 640x640 image into 13 x 13 = 169 tiles (about 5 s of sleeping).
    options = InferenceOptions(tile=64, tile_overlap=16, tile_threshold=0)
    catalog = {"slow": ModelChoice(key="slow", network="fastderain", weights="-", model=SlowNet(), size_multiple=16)}
    srv = Server(ServeConfig(port=0, options=options), catalog=catalog)
    try:
        status, big = srv.upload(png_bytes(640, 640), name="big.png")
        assert status == 202
        status, small = srv.upload(png_bytes(48, 32), name="small.png")
        assert status == 202 and small["state"] == "queued" and small["ahead"] == 1
        worker_job = srv.httpd.jobs.get(big["id"])  # the worker's own record, still there after the delete
        deadline = time.monotonic() + 60
        while worker_job.tiles_done < 3:
            assert time.monotonic() < deadline, "the big job never started"
            time.sleep(0.01)
        total = worker_job.tiles_total
        assert total == count_tiles(640, 640, options, 16) == 169

        status, reply = srv.json("DELETE", f"/api/jobs/{big['id']}")
        assert status == 200 and reply["deleted"] == big["id"]
        assert srv.json("GET", f"/api/jobs/{big['id']}")[0] == 404
        # The photo behind it runs next, long before the deleted one would have finished all its tiles.
        done = srv.wait(small["id"], timeout=60)
        assert done["state"] == "done", done
        stopped_at, calls = worker_job.tiles_done, SlowNet.calls
        assert stopped_at < total and calls < total + 1, (stopped_at, calls, total)
        time.sleep(0.3)  # the cancelled job computes nothing more
        assert worker_job.tiles_done == stopped_at and SlowNet.calls == calls
        assert [j["id"] for j in srv.json("GET", "/api/jobs")[1]["jobs"]] == [small["id"]]
        assert reply.get("cancelled") is True  # the answer says it was stopped, not just forgotten

        # A script waiting on POST /api/derain that hangs up cancels its photo the same way.
        before = SlowNet.calls
        raw = png_bytes(640, 640)
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        sock.sendall(f"POST /api/derain?name=gone.png HTTP/1.1\r\nHost: localhost\r\n"
                     f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
        deadline = time.monotonic() + 60
        while SlowNet.calls < before + 3:
            assert time.monotonic() < deadline, "the synchronous job never started"
            time.sleep(0.01)
        sock.close()
        deadline = time.monotonic() + 30
        while srv.json("GET", "/api/health")[1]["jobs"]["running"]:
            assert time.monotonic() < deadline, "the abandoned job kept running"
            time.sleep(0.05)
        calls = SlowNet.calls
        assert calls - before < total, (calls - before, total)
        time.sleep(0.3)
        assert SlowNet.calls == calls
    finally:
        srv.close()


# --- bad requests and clients that hang up: one JSON line, no traceback ------------------------------------------
def raw_exchange(port: int, request: bytes, reset: bool = False) -> bytes:
    """Send ``request`` on a fresh socket; return what comes back (nothing when ``reset`` hangs up at once,
    with a TCP reset, as a closed browser tab or a killed script does)."""

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(request)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def test_negative_content_length_gets_a_one_line_json_400(server, capfd):
    reply = raw_exchange(server.port, b"POST /api/jobs?name=a.png HTTP/1.1\r\nHost: localhost\r\n"
                                      b"Content-Length: -5\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"Content-Type: application/json" in head
    error = json.loads(body)["error"]
    assert "Content-Length" in error and "\n" not in error
    assert "Traceback" not in capfd.readouterr().err
    assert server.json("GET", "/api/config")[0] == 200  # and it goes on serving


def test_clients_that_hang_up_leave_no_traceback(server, capfd):
    photo = png_bytes(64, 48)
    status, job = server.upload(photo, name="hangup.png")
    assert status == 202 and server.wait(job["id"])["state"] == "done"
    requests = [
        # an upload cut off half way by a reset
        b"POST /api/jobs?name=x.png HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n" + photo[:100],
        # a download, and a page, asked for and abandoned at once
        f"GET /api/jobs/{job['id']}/result HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(),
        b"GET /static/app.js HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ]
    for request in requests * 3:
        raw_exchange(server.port, request, reset=True)
    time.sleep(0.5)  # let the handler threads meet the closed connections
    assert server.json("GET", "/api/config")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err[-2000:]


def test_malformed_requests_get_json_errors(server):
    reply = raw_exchange(server.port, b"PUT /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"405", b"501") and "PUT" in json.loads(body)["error"]
    reply = raw_exchange(server.port, b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"414" and json.loads(body)["error"]


# --- multipart forms, the synchronous endpoint, health, result formats -----------------------------------
def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body as browsers and ``curl -F`` send it, and its Content-Type."""
    boundary = "------------------------d5a1c0ffee"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f"Content-Type: application/octet-stream\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def textured(width: int, height: int, fmt: str = "PNG") -> bytes:
    """A small photo-like image: smooth colour gradients and waves with a little grain (plain grey would hide
    a mixed-up file; pure noise is no photo)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(width * height)
    pixels = np.stack([60 + 120 * x / width, 80 + 60 * np.sin(y / 7.0), 140 + 50 * np.cos((x + y) / 11.0)], axis=2)
    pixels += rng.normal(0, 2, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(out, format=fmt)
    return out.getvalue()


def test_multipart_form_upload_is_queued_like_a_raw_one(server):
    photo = textured(80, 56)
    body, content_type = multipart({"model": "fastderain-rain100l"}, {"file": ("form photo.png", photo)})
    status, job = server.json("POST", "/api/jobs", body, headers={"Content-Type": content_type})
    assert status == 202, job
    assert job["filename"] == "form photo.png" and job["model"] == "fastderain-rain100l"
    assert (job["width"], job["height"]) == (80, 56)
    assert server.wait(job["id"])["state"] == "done"
    # The same photo sent raw gives the same result: the form's bytes arrived unchanged.
    status, raw = server.upload(photo, name="raw.png", model="fastderain-rain100l")
    assert status == 202 and server.wait(raw["id"])["state"] == "done"
    results = [server.request("GET", f"/api/jobs/{i}/result")[2] for i in (job["id"], raw["id"])]
    assert results[0] == results[1]

    # A form without a file says how to send one.
    body, content_type = multipart({"model": DEFAULT}, {})
    status, reply = server.json("POST", "/api/jobs", body, headers={"Content-Type": content_type})
    assert status == 400 and "file=@" in reply["error"]
    status, reply = server.json("POST", "/api/jobs", b"--x\r\n", headers={"Content-Type": "multipart/form-data"})
    assert status == 400 and "boundary" in reply["error"]


def test_curl_form_upload(server, tmp_path):
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("needs the curl command")
    path = tmp_path / "photo.jpg"
    path.write_bytes(textured(72, 40, "JPEG"))
    out = subprocess.run(["curl", "-sS", "-F", f"file=@{path}", f"http://localhost:{server.port}/api/jobs"],
                         capture_output=True, timeout=60)
    job = json.loads(out.stdout)
    assert job["filename"] == "photo.jpg" and (job["width"], job["height"]) == (72, 40), job
    result = tmp_path / "out.png"
    out = subprocess.run(["curl", "-sS", "-f", "-F", f"file=@{path}", "-o", str(result),
                          f"http://localhost:{server.port}/api/derain"], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Image.open(result).format == "PNG" and Image.open(result).size == (72, 40)


def test_synchronous_derain_returns_the_image(server):
    photo = textured(96, 64)
    status, headers, body = server.request("POST", "/api/derain?name=sync.png", photo)
    assert status == 200 and headers["Content-Type"] == "image/png", body[:200]
    result = Image.open(io.BytesIO(body))
    assert result.format == "PNG" and result.size == (96, 64)
    assert "sync-derained.png" in headers["Content-Disposition"]
    # The same pixels as the queue gives, and nothing is left behind in the queue.
    status, job = server.upload(photo, name="queued.png")
    assert status == 202 and server.wait(job["id"])["state"] == "done"
    assert server.request("GET", f"/api/jobs/{job['id']}/result")[2] == body
    assert all(j["filename"] != "sync.png" for j in server.json("GET", "/api/jobs")[1]["jobs"])

    body_form, content_type = multipart({"format": "webp"}, {"file": ("form.png", photo)})
    status, headers, body = server.request("POST", "/api/derain", body_form, headers={"Content-Type": content_type})
    assert status == 200 and headers["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(body)).format == "WEBP" and "form-derained.webp" in headers["Content-Disposition"]

    status, reply = server.json("POST", "/api/derain", b"not an image at all")
    assert status == 415 and "not an image" in reply["error"]
    status, reply = server.json("POST", "/api/derain?format=gif", photo)
    assert status == 400 and "png, jpeg, webp" in reply["error"]


def test_health(server):
    status, health = server.json("GET", "/api/health")
    assert status == 200 and health["status"] == "ok"
    assert health["models"] == [DEFAULT, "fastderain-rain100l", "fastderain-student"]
    assert health["device"] == "cpu"
    assert set(health["jobs"]) == {"queued", "running", "done", "failed"}


@pytest.mark.parametrize("fmt, mime, pil", [("jpeg", "image/jpeg", "JPEG"), ("jpg", "image/jpeg", "JPEG"),
                                            ("webp", "image/webp", "WEBP"), ("png", "image/png", "PNG")])
def test_result_downloads_in_jpeg_webp_or_png(server, fmt, mime, pil):
    photo = textured(96, 64)
    status, job = server.upload(photo, name="formats.jpg")
    assert status == 202 and server.wait(job["id"])["state"] == "done"
    png = server.request("GET", f"/api/jobs/{job['id']}/result")[2]
    status, headers, body = server.request("GET", f"/api/jobs/{job['id']}/result?format={fmt}&download=1")
    assert status == 200 and headers["Content-Type"] == mime
    suffix = {"jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp", "png": ".png"}[fmt]
    assert f"formats-derained{suffix}" in headers["Content-Disposition"]
    image = Image.open(io.BytesIO(body))
    assert image.format == pil and image.size == (96, 64)
    reference = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float64)
    # Lossy, but the same picture: within a few grey levels of the PNG on average.
    error = np.abs(np.asarray(image.convert("RGB")).astype(np.float64) - reference).mean()
    assert error < 3, error
    status, reply = server.json("GET", f"/api/jobs/{job['id']}/result?format=bmp")
    assert status == 400 and "png, jpeg, webp" in reply["error"]
    status, reply = server.json("GET", f"/api/jobs/{job['id']}/result?format=jpeg&quality=0")
    assert status == 400 and "quality" in reply["error"]


def test_jpeg_download_of_a_jpeg_keeps_its_encoding_and_exif(server):
    photo = Image.open(io.BytesIO(textured(160, 120)))
    exif = Image.Exif()
    exif[0x010F] = "RainCam"  # Make
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=70, subsampling=2, exif=exif.tobytes())
    upload = out.getvalue()
    status, job = server.upload(upload, name="cam.jpg")
    assert status == 202 and server.wait(job["id"])["state"] == "done"
    status, headers, body = server.request("GET", f"/api/jobs/{job['id']}/result?format=jpeg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    result, original = Image.open(io.BytesIO(body)), Image.open(io.BytesIO(upload))
    from PIL import JpegImagePlugin

    # The upload's own quantization tables and 4:2:0 chroma, not a fixed quality: about the size it was.
    assert result.quantization == original.quantization
    assert JpegImagePlugin.get_sampling(result) == JpegImagePlugin.get_sampling(original) == 2
    assert result.getexif().get(0x010F) == "RainCam"
    # An explicit quality overrides the tables.
    status, _, body = server.request("GET", f"/api/jobs/{job['id']}/result?format=jpeg&quality=95")
    assert status == 200 and Image.open(io.BytesIO(body)).quantization != original.quantization


def test_catalog_uses_the_size_multiple_the_network_declares():
    # The page's tile counts and tile checks must use the multiple inference pads to (the network's own).
    from derain.inference.restore import size_multiple_of

    catalog = build_catalog([], torch.device("cpu"))
    for choice in catalog.values():
        assert choice.size_multiple == size_multiple_of(choice.model), choice.key


def test_on_a_cpu_without_native_bf16_the_page_starts_on_the_cpu_student(monkeypatch):
    # As `derain PHOTO` does (derain.inference.model_choice): the student first, the full default still offered.
    from derain.inference import model_choice
    from derain.inference.hardware import CpuKind

    monkeypatch.setattr(model_choice, "cpu_kind", lambda: CpuKind.AVX2)
    monkeypatch.setattr(model_choice, "_said", set())
    catalog = build_catalog([], torch.device("cpu"))
    assert list(catalog)[0] == "fastderain-student" and DEFAULT in catalog
    monkeypatch.setattr(model_choice, "cpu_kind", lambda: CpuKind.BF16)
    assert list(build_catalog([], torch.device("cpu")))[0] == DEFAULT
