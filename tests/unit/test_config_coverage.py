"""Every run-config field has a test that proves it changes behaviour.

A field that is accepted and then ignored is a silent failure. This table names, for each field, the
test that sets it and checks its effect; a new field without an entry fails here.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

from pydantic import BaseModel

from tuneforge.config.schema import RunConfig

TESTS = Path(__file__).resolve().parents[1]
E = "tests/unit/test_settings_effect.py::"

#: Field -> "tests/<file>::<test>" proving its effect. List-of-section fields (datasets, stages, search.space)
#: are one entry: their items are specs validated by their own models.
COVERAGE: dict[str, str] = {
    "model.name_or_path": "tests/unit/test_cli.py::test_bad_model_path_is_a_clear_error",
    "model.gguf_file": E + "test_gguf_file_is_looked_up_in_the_folder",
    "model.trust_remote_code": E + "test_trust_remote_code_reaches_the_tokenizer",
    "data.datasets": "tests/unit/test_formats.py::test_mixing_with_ratio_and_max_samples",
    "data.dataset_info": "tests/unit/test_fixtures.py::test_registry_entries_load_unchanged",
    "data.eval_datasets": E + "test_eval_datasets_replace_the_split",
    "data.format": "tests/unit/test_formats.py::test_format_override_beats_detection",
    "data.max_length": "tests/unit/test_processors.py::test_truncation_keeps_whole_turns_and_is_counted",
    "data.max_samples": E + "test_data_max_samples_caps_every_dataset",
    "data.placeholders": "tests/unit/test_formats.py::test_placeholders_are_filled_and_unfilled_ones_reported",
    "data.split": "tests/unit/test_quality.py::test_split_is_exact_reproducible_and_keeps_duplicates_together",
    "data.seed": E + "test_data_seed_changes_the_split",
    "data.replay": "tests/e2e/test_multistage.py::test_two_stages",
    "data.replay_ratio": "tests/e2e/test_multistage.py::test_two_stages",
    "data.replay_self_answers": E + "test_replay_self_answers_asks_the_model_for_the_replay_answers",
    "data.skip_invalid": "tests/unit/test_readers.py::test_skip_invalid_trains_on_the_rest",
    "template.name": "tests/unit/test_templates.py::test_alpaca_zh_lays_out_instruction_input_output",
    "template.system": "tests/e2e/test_eval.py::test_chat_and_eval_ask_with_the_system_prompt_the_model_was_trained_with",
    "template.train_on_prompt": "tests/unit/test_processors.py::test_train_on_prompt_trains_everything",
    "template.mask_history": "tests/unit/test_processors.py::test_mask_history_trains_only_the_last_answer",
    "method.name": "tests/e2e/test_train.py::test_each_method_learns_and_trains_only_its_parameters",
    "method.lora.rank": E + "test_lora_rank_alpha_and_dropout_reach_peft",
    "method.lora.alpha": E + "test_lora_rank_alpha_and_dropout_reach_peft",
    "method.lora.dropout": E + "test_lora_rank_alpha_and_dropout_reach_peft",
    "method.lora.targets": "tests/unit/test_advice.py::test_lora_options_reach_peft",
    "method.lora.use_dora": "tests/unit/test_advice.py::test_lora_options_reach_peft",
    "method.lora.use_rslora": "tests/unit/test_advice.py::test_lora_options_reach_peft",
    "method.lora.init": "tests/unit/test_advice.py::test_lora_options_reach_peft",
    "method.lora.loraplus_lr_ratio": E + "test_loraplus_reaches_every_alignment_trainer",
    "method.freeze.trainable_layers": "tests/e2e/test_train.py::test_each_method_learns_and_trains_only_its_parameters",
    "method.freeze.modules": "tests/e2e/test_train.py::test_qlora_trains_on_cpu",
    "method.freeze.unfreeze_at": "tests/e2e/test_methods.py::test_progressive_unfreezing_starts_the_lower_layer_at_its_fraction",
    "method.adalora.init_rank": "tests/unit/test_peft_methods.py::test_adalora_init_rank_and_penalty_weight_reach_the_model",
    "method.adalora.warmup_share": "tests/e2e/test_methods.py::test_adalora_schedule_follows_the_run_and_the_budget_is_reallocated",
    "method.adalora.final_share": "tests/e2e/test_methods.py::test_adalora_schedule_follows_the_run_and_the_budget_is_reallocated",
    "method.adalora.interval": "tests/unit/test_peft_methods.py::test_adalora_schedule_is_a_function_of_the_run_length",
    "method.adalora.orth_reg_weight": "tests/unit/test_peft_methods.py::test_adalora_init_rank_and_penalty_weight_reach_the_model",
    "method.ia3.targets": "tests/unit/test_peft_methods.py::test_ia3_targets_and_feedforward_choose_what_is_rescaled",
    "method.ia3.feedforward": "tests/unit/test_peft_methods.py::test_ia3_targets_and_feedforward_choose_what_is_rescaled",
    "method.ln_tuning.targets": "tests/unit/test_peft_methods.py::test_ln_tuning_targets_choose_the_norms",
    "output.report_to": "tests/e2e/test_trackers.py::test_every_tracker_receives_config_losses_and_evaluation",
    "output.project": "tests/e2e/test_trackers.py::test_every_tracker_receives_config_losses_and_evaluation",
    "method.prompt_learning.virtual_tokens": "tests/unit/test_peft_methods.py::test_virtual_tokens_come_first_in_prompt_tuning_s_logits_and_not_in_prefix_tuning_s",
    "method.prompt_learning.init_text": "tests/unit/test_peft_methods.py::test_prompt_tuning_starts_from_the_init_text_or_at_random",
    "method.prompt_learning.encoder": "tests/unit/test_peft_methods.py::test_ptuning_encoder_and_its_width_reach_peft",
    "method.prompt_learning.encoder_hidden_size": "tests/unit/test_peft_methods.py::test_ptuning_encoder_and_its_width_reach_peft",
    "method.prompt_learning.prefix_projection": "tests/unit/test_peft_methods.py::test_prefix_projection_trains_an_mlp_over_a_small_embedding",
    "method.adapter.size": "tests/unit/test_peft_methods.py::test_bottleneck_settings_reach_every_adapter",
    "method.adapter.activation": "tests/unit/test_peft_methods.py::test_bottleneck_settings_reach_every_adapter",
    "method.adapter.dropout": "tests/unit/test_peft_methods.py::test_bottleneck_settings_reach_every_adapter",
    "method.adapter.targets": "tests/unit/test_peft_methods.py::test_bottleneck_settings_reach_every_adapter",
    "method.quant_bits": "tests/e2e/test_train.py::test_qlora_trains_on_cpu",
    "training.stage": "tests/e2e/test_alignment.py::test_stage_trains",
    "training.epochs": E + "test_training_fields_reach_the_trainer_arguments",
    "training.max_steps": E + "test_training_fields_reach_the_trainer_arguments",
    "training.learning_rate": E + "test_training_fields_reach_the_trainer_arguments",
    "training.batch_size": E + "test_training_fields_reach_the_trainer_arguments",
    "training.gradient_accumulation": E + "test_training_fields_reach_the_trainer_arguments",
    "training.scheduler": E + "test_training_fields_reach_the_trainer_arguments",
    "training.warmup_ratio": E + "test_training_fields_reach_the_trainer_arguments",
    "training.weight_decay": E + "test_training_fields_reach_the_trainer_arguments",
    "training.max_grad_norm": E + "test_training_fields_reach_the_trainer_arguments",
    "training.precision": "tests/unit/test_advice.py::test_precision_can_be_forced_and_auto_is_measured",
    "training.frozen_precision": "tests/unit/test_frozen_precision.py::test_frozen_precision_reaches_the_loaded_model",
    "training.gradient_checkpointing": "tests/unit/test_estimate.py::test_memory_shrinks_with_lora_qlora_checkpointing_zero_and_offload",
    "training.eval_steps": E + "test_training_fields_reach_the_trainer_arguments",
    "training.save_steps": E + "test_training_fields_reach_the_trainer_arguments",
    "training.eval_on_start": E + "test_training_fields_reach_the_trainer_arguments",
    "training.save_total_limit": E + "test_training_fields_reach_the_trainer_arguments",
    "training.early_stopping_patience": E + "test_early_stopping_patience_adds_the_callback",
    "training.keep_best": "tests/e2e/test_forgetting.py::test_guard_truncation_warning_and_best_checkpoint",
    "training.seed": E + "test_training_fields_reach_the_trainer_arguments",
    "training.logging_steps": E + "test_training_fields_reach_the_trainer_arguments",
    "training.padding_free": E + "test_padding_free_chooses_the_collator",
    "training.cpu_piece_tokens": E + "test_cpu_piece_tokens_reaches_the_trainer_on_cpu_only",
    "training.group_by_length": E + "test_training_fields_reach_the_trainer_arguments",
    "training.threads": E + "test_threads_sets_torch_threads",
    "training.cpu_allocator": "tests/unit/test_allocator.py::test_cpu_allocator_reaches_the_allocator_and_the_run_log",
    "alignment.beta": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.dpo_loss": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.simpo_gamma": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.sft_weight": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.precompute_ref": "tests/e2e/test_alignment.py::test_precomputed_reference_gives_the_same_first_losses",
    "alignment.desirable_weight": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.undesirable_weight": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.reward_model": "tests/e2e/test_alignment.py::test_stage_trains",
    "alignment.rewards": "tests/unit/test_rewards.py::test_bad_rewards_are_reported_together",
    "alignment.reward_weights": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.answer_pattern": E + "test_answer_pattern_decides_what_exact_answer_reads",
    "alignment.target_length": "tests/unit/test_rewards.py::test_format_and_length_rewards",
    "alignment.num_generations": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.max_new_tokens": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.temperature": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.kl_coef": E + "test_alignment_fields_reach_the_stage_arguments",
    "alignment.ppo_epochs": E + "test_ppo_epochs_reuses_each_rollout_that_many_times",
    "alignment.clip_range": E + "test_ppo_value_coef_and_clip_range_change_the_loss",
    "alignment.value_coef": E + "test_ppo_value_coef_and_clip_range_change_the_loss",
    "evaluation.metrics": E + "test_evaluation_metrics_computes_only_the_listed_ones",
    "evaluation.split": "tests/e2e/test_search.py::test_search_can_maximise_a_metric_on_the_validation_split",
    "evaluation.file": "tests/e2e/test_eval.py::test_eval_predictions_file_scores_and_names_bad_records",
    "evaluation.max_samples": "tests/e2e/test_eval.py::test_training_with_a_test_split_ends_with_the_base_vs_tuned_table",
    "evaluation.max_new_tokens": "tests/e2e/test_eval.py::test_training_with_a_test_split_ends_with_the_base_vs_tuned_table",
    "evaluation.batch_size": "tests/e2e/test_eval.py::test_eval_run_compares_base_and_tuned_on_the_test_split",
    "evaluation.normalize": E + "test_normalize_changes_exact_match",
    "evaluation.base": "tests/e2e/test_eval.py::test_eval_run_compares_base_and_tuned_on_the_test_split",
    "evaluation.judge.backend": "tests/e2e/test_eval.py::test_eval_endpoint_asks_every_test_question_and_can_judge",
    "evaluation.judge.model": "tests/e2e/test_eval.py::test_eval_endpoint_asks_every_test_question_and_can_judge",
    "evaluation.judge.base_url": "tests/e2e/test_eval.py::test_eval_endpoint_asks_every_test_question_and_can_judge",
    "evaluation.judge.api_key_env": "tests/e2e/test_serve_batching.py::test_the_judge_asks_a_model_served_by_tuneforge",
    "evaluation.judge.rubric": "tests/unit/test_judge.py::test_rubric_is_overridable",
    "evaluation.judge.max_new_tokens": "tests/unit/test_judge.py::test_local_judge_with_the_default_model_runs_and_accounts_for_every_reply",
    "evaluation.auto": "tests/e2e/test_eval.py::test_training_with_a_test_split_ends_with_the_base_vs_tuned_table",
    "evaluation.forgetting": "tests/e2e/test_forgetting.py::test_guard_can_be_turned_off",
    "output.dir": "tests/e2e/test_train.py::test_finished_runs_are_not_overwritten",
    "output.name": "tests/e2e/test_train.py::test_finished_runs_are_not_overwritten",
    "model.device_map": "tests/e2e/test_train.py::test_device_map_auto_trains_lora_and_serves_the_result",
    "distributed.strategy": "tests/e2e/test_distributed.py::test_two_workers_train_like_one_and_save_a_complete_adapter",
    "distributed.nproc_per_node": "tests/e2e/test_distributed.py::test_two_workers_train_like_one_and_save_a_complete_adapter",
    "distributed.nnodes": "tests/e2e/test_distributed.py::test_two_machines_on_loopback_train_like_one",
    "distributed.node_rank": "tests/e2e/test_distributed.py::test_two_machines_on_loopback_train_like_one",
    "distributed.master_addr": "tests/unit/test_distributed_config.py::test_print_launch_gives_one_command_per_machine",
    "distributed.master_port": "tests/e2e/test_distributed.py::test_launch_errors_are_clear_and_bounded",
    "distributed.timeout": "tests/e2e/test_distributed.py::test_launch_errors_are_clear_and_bounded",
    "distributed.zero_stage": "tests/e2e/test_distributed.py::test_two_workers_train_like_one_and_save_a_complete_adapter",
    "distributed.offload": "tests/e2e/test_distributed.py::test_a_sharded_full_fine_tune_saves_one_consolidated_model",
    "distributed.deepspeed_config": "tests/unit/test_distributed_config.py::test_a_users_deepspeed_json_is_checked_not_silently_overridden",
    "distributed.fsdp.sharding": "tests/unit/test_distributed_config.py::test_each_strategy_selects_its_engine_in_the_trainer_arguments",
    "distributed.fsdp.activation_checkpointing": "tests/e2e/test_distributed.py::test_a_sharded_full_fine_tune_saves_one_consolidated_model",
    "distributed.fsdp.cpu_offload": "tests/unit/test_distributed_config.py::test_each_strategy_selects_its_engine_in_the_trainer_arguments",
    "output.overwrite": "tests/e2e/test_train.py::test_finished_runs_are_not_overwritten",
    "search.trials": "tests/e2e/test_search.py::test_search_prunes_resumes_and_writes_the_best_config",
    "search.objective": "tests/e2e/test_search.py::test_search_can_maximise_a_metric_on_the_validation_split",
    "search.space": "tests/e2e/test_search.py::test_search_space_keys_are_checked",
    "search.pruning": E + "test_search_sampler_pruning_and_start_with_shape_the_study",
    "search.sampler": E + "test_search_sampler_pruning_and_start_with_shape_the_study",
    "search.start_with": E + "test_search_sampler_pruning_and_start_with_shape_the_study",
    "search.seed": "tests/e2e/test_search.py::test_search_prunes_resumes_and_writes_the_best_config",
    "stages": "tests/e2e/test_multistage.py::test_two_stages",
}

#: Fields holding lists of sections: one entry covers them (see above).
_LEAVES = {"datasets", "eval_datasets", "replay", "stages", "space"}


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        section = next((a for a in (info.annotation, *typing.get_args(info.annotation))
                        if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if section is not None and name not in _LEAVES:
            out += _fields(section, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_config_field_names_a_test_of_its_effect() -> None:
    fields = _fields(RunConfig)
    missing = [f for f in fields if f not in COVERAGE]
    assert not missing, f"config fields without a test that proves their effect: {missing} (add one to COVERAGE)"
    assert not set(COVERAGE) - set(fields), f"COVERAGE names fields that no longer exist: {set(COVERAGE) - set(fields)}"


def test_every_named_test_exists() -> None:
    gone = []
    for where in set(COVERAGE.values()):
        file, name = where.split("::")
        path = TESTS.parent / file
        if not path.is_file() or name not in _test_names(path):
            gone.append(where)
    assert not gone, f"COVERAGE points at tests that do not exist: {gone}"
