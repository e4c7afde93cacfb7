"""Shared test fixtures: the real data in ../shared, skipped with a clear reason when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


def shared_path(relative: str) -> Path:
    """``../shared/<relative>`` from the project root, or skip the test saying what is missing."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"needs ../shared/{relative} beside the project (not present at {path})")
    return path


@pytest.fixture
def shared():
    """Callable fixture: ``shared("data/rain100l")`` returns the path or skips."""
    return shared_path


@pytest.fixture
def one_thread():
    """One torch thread for the test: its tensors are small, and a second intra-op thread gains nothing but,
    on a busy machine, makes every element-wise op wait for a core (100x slower under load). Restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----- markers (registered in pyproject.toml): chosen here so that a run can select, e.g. the quick selection
# python -m pytest -m "not slow and not browser"

# Files whose every test drives a headless browser.
BROWSER_FILES = {"test_browser.py"}
# Fixtures that read ../shared (the `shared` fixture, and fixtures that call shared_path themselves), and tests
# that reach ../shared by a path of their own.
SHARED_FIXTURES = {"shared", "training_images"}
NEEDS_SHARED = {"test_run_everyday.py::test_stdin_to_stdout_in_the_input_format"}
# Tests that took more than about 3 s (call + setup) on a 2-core CPU shared with a training run, measured one
# file at a time: nice -n 19 env OMP_NUM_THREADS=1 python -m pytest --durations=0 tests/test_FILE.py
SLOW = {
    "test_allinone.py::test_repo_config_trains_all_five_tasks_with_the_selector_loss",
    "test_allinone.py::test_run_with_a_task_prints_the_choice_and_refuses_single_task_models",
    "test_api.py::test_every_registry_network_declares_the_size_multiple_of_the_registry",
    "test_browser.py::test_upload_queue_slider_loupe_and_download",
    "test_cli.py::test_eval_rain100l_inputs_reproduce_the_matlab_reference",
    "test_cli.py::test_named_ensemble_from_the_cli_is_the_api_one",
    "test_cli.py::test_run_folder_keeps_names_and_sizes_then_skips",
    "test_cli.py::test_written_files_are_replaced_only_when_asked",
    "test_distributed.py::test_two_processes_keep_identical_weights",
    "test_dmsr.py::test_trains_through_the_cli_and_runs_from_its_checkpoint",
    "test_export.py::test_a_wrong_export_is_refused_and_removed",
    "test_export.py::test_export_is_checked_and_self_describing",
    "test_export.py::test_multi_output_and_unshuffle_free_models_export",
    "test_fsderain.py::test_paired_finetune_from_the_default_model",
    "test_fsdrnet.py::test_restore_odd_sizes",
    "test_mspfn.py::test_trains_through_the_cli_and_runs_from_its_checkpoint",
    "test_quantize.py::test_int8_model_keeps_the_image_layers_in_float_and_stays_close",
    "test_quantize.py::test_run_picks_int8_where_the_cpu_rule_says",
    "test_rain2avoid.py::test_selfsup_cli_writes_results_masks_and_pseudo",
    "test_real_rain.py::test_near_layer_adds_wide_soft_streaks",
    "test_real_rain.py::test_real_preset_is_closer_to_the_real_photos_than_the_old_presets",
    "test_recipe.py::test_a_spent_time_budget_stops_and_the_same_command_continues",
    "test_recipe.py::test_stages_run_in_order_and_a_second_run_has_nothing_to_do",
    "test_recipe.py::test_use_committed_replaces_a_stage_whose_run_is_gone",
    "test_recipe.py::test_use_committed_skips_the_stages_before_the_committed_one",
    "test_registry.py::test_each_registered_parameter_count_is_the_built_networks",
    "test_run_everyday.py::test_stdin_to_stdout_in_the_input_format",
    "test_run_everyday.py::test_truncated_png_is_refused_and_nothing_written",
    "test_serve.py::test_a_failed_photo_shows_its_message_and_the_queue_goes_on",
    "test_serve.py::test_bad_upload_gets_a_clear_json_error_and_the_server_keeps_serving",
    "test_serve.py::test_derain_serve_command_serves_the_page_until_interrupted",
    "test_serve.py::test_derain_serve_reports_a_missing_checkpoint_on_one_line",
    "test_serve.py::test_real_photo_is_derained_at_full_size_with_tile_progress",
    "test_small_variants.py::test_equal_cost_config_trains_two_steps",
    "test_teacher.py::test_bad_teacher_settings_are_one_line_errors",
    "test_teacher.py::test_targets_are_the_teachers_ensemble_and_are_cached",
    "test_train.py::test_a_diverging_run_stops_with_one_line_and_a_healthy_one_does_not",
    "test_train.py::test_a_second_run_never_replaces_an_earlier_ones_checkpoints_unasked",
    "test_train.py::test_accumulating_two_batches_of_4_gives_the_update_of_one_batch_of_8",
    "test_train.py::test_channels_last_training_matches_contiguous_and_saves_loadable_weights",
    "test_train.py::test_resume_accepts_the_run_folder_its_weights_or_its_state",
    "test_train.py::test_resume_from_another_models_state_is_one_line_error",
    "test_train.py::test_resume_gives_the_same_weights_as_one_run",
    "test_train.py::test_stop_step_ends_the_run_early_on_the_full_schedule",
    "test_train.py::test_tensorboard_is_optional_and_lazy",
    "test_train.py::test_time_budget_stops_at_a_checkpoint_then_auto_resume_finishes",
    "test_train.py::test_train_command_bad_inputs_are_one_line",
    "test_train.py::test_train_command_line_errors_and_weights_for_run",
    "test_train.py::test_training_on_synthetic_rain_only",
    "test_train.py::test_validation_scores_real_pairs",
    "test_video.py::test_two_shards_joined_give_every_frame_once_with_the_sound",
    "test_video_ffprobe.py::test_output_plays_with_the_inputs_frames_duration_and_sound",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = f"{item.path.name}::{item.originalname if isinstance(item, pytest.Function) else item.name}"
        if item.path.name in BROWSER_FILES:
            item.add_marker(pytest.mark.browser)
        if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())) or name in NEEDS_SHARED:
            item.add_marker(pytest.mark.needs_shared)
        if name in SLOW:
            item.add_marker(pytest.mark.slow)
