"""The web UI's words in English and Chinese; the language switch relabels every registered component."""

from __future__ import annotations

from typing import Any

LANGUAGES = {"English": "en", "中文": "zh"}

TEXT: dict[str, dict[str, str]] = {
    "title": {"en": "# tuneforge", "zh": "# tuneforge 微调工作台"},
    "language": {"en": "Language", "zh": "语言"},
    "tab_train": {"en": "Train", "zh": "训练"},
    "tab_eval": {"en": "Evaluate", "zh": "评估"},
    "tab_chat": {"en": "Chat", "zh": "对话"},
    "tab_export": {"en": "Export", "zh": "导出"},
    "model": {"en": "Model ('default', a folder or a run)", "zh": "模型（default、模型目录或训练目录）"},
    "datasets": {"en": "Dataset files (comma-separated paths)", "zh": "数据文件（逗号分隔的路径）"},
    "registry": {"en": "Or dataset_info.json entries", "zh": "或 dataset_info.json 中的数据集"},
    "stage": {"en": "Stage", "zh": "训练阶段"},
    "method": {"en": "Method", "zh": "微调方法"},
    "learning_rate": {"en": "Learning rate (0: advised)", "zh": "学习率（0：按建议）"},
    "epochs": {"en": "Epochs (0: advised)", "zh": "训练轮数（0：按建议）"},
    "max_steps": {"en": "Max steps (0: from epochs)", "zh": "最大步数（0：按轮数）"},
    "batch_size": {"en": "Batch size (0: advised)", "zh": "批大小（0：按建议）"},
    "gradient_accumulation": {"en": "Gradient accumulation (0: advised)", "zh": "梯度累积（0：按建议）"},
    "max_length": {"en": "Max tokens per example", "zh": "每条样本最大 token 数"},
    "lora_rank": {"en": "LoRA rank (0: advised)", "zh": "LoRA 秩（0：按建议）"},
    "run_name": {"en": "Run name", "zh": "运行名称"},
    "placeholders": {"en": "Placeholders in the data (name=Forge, author=Acme)",
                     "zh": "数据中的占位符（name=Forge, author=Acme）"},
    "no_model": {"en": "{name} has no trained model yet (status: {status})", "zh": "{name} 还没有训练好的模型（状态：{status}）"},
    "recommend": {"en": "Recommend", "zh": "推荐参数"},
    "estimate": {"en": "Estimate", "zh": "资源估算"},
    "preview": {"en": "Preview a masked example", "zh": "预览掩码样本"},
    "start": {"en": "Start", "zh": "开始训练"},
    "stop": {"en": "Stop (Ctrl-C, saves a checkpoint)", "zh": "停止（Ctrl-C，保存检查点）"},
    "advice": {"en": "Advice (value and reason)", "zh": "建议（取值与理由）"},
    "estimate_out": {"en": "Estimate", "zh": "估算结果"},
    "preview_out": {"en": "Example as training sees it (green: trained tokens)", "zh": "训练所见样本（绿色：参与训练的 token）"},
    "run": {"en": "Run", "zh": "运行"},
    "refresh": {"en": "Refresh", "zh": "刷新"},
    "status": {"en": "Status", "zh": "状态"},
    "loss_plot": {"en": "Loss", "zh": "损失"},
    "ppl_plot": {"en": "Perplexity", "zh": "困惑度"},
    "log": {"en": "Log (last lines)", "zh": "日志（末尾）"},
    "max_samples": {"en": "Examples to evaluate", "zh": "评估样本数"},
    "evaluate": {"en": "Evaluate base vs tuned", "zh": "评估：基座 vs 微调"},
    "eval_table": {"en": "Base vs tuned", "zh": "基座 vs 微调"},
    "samples": {"en": "Sample predictions", "zh": "预测样例"},
    "chat_model": {"en": "Model or run", "zh": "模型或运行"},
    "message": {"en": "Message", "zh": "消息"},
    "send": {"en": "Send", "zh": "发送"},
    "clear": {"en": "Clear", "zh": "清空"},
    "temperature": {"en": "Temperature (0 = greedy)", "zh": "温度（0 为贪心）"},
    "max_new_tokens": {"en": "Max new tokens", "zh": "最大生成 token 数"},
    "system": {"en": "System prompt", "zh": "系统提示词"},
    "export_out": {"en": "Output folder", "zh": "输出目录"},
    "overwrite": {"en": "Replace an existing folder", "zh": "覆盖已有目录"},
    "export": {"en": "Merge, save and verify", "zh": "合并、保存并校验"},
    "export_result": {"en": "Verification", "zh": "校验结果"},
    # messages shown in status boxes
    "started": {"en": "started {name} (pid {pid}); config {config}", "zh": "已启动 {name}（pid {pid}）；配置 {config}"},
    "stopping": {"en": "sent Ctrl-C to {name}: it saves a checkpoint and stops", "zh": "已向 {name} 发送 Ctrl-C：保存检查点后停止"},
    "not_running": {"en": "{name} is not running", "zh": "{name} 未在运行"},
    "no_run": {"en": "no run selected", "zh": "未选择运行"},
    "running": {"en": "running", "zh": "运行中"},
    "finished": {"en": "finished", "zh": "已完成"},
    "interrupted": {"en": "stopped (resumable: Start again with the same name)", "zh": "已停止（可续训：同名再次开始）"},
    "failed": {"en": "failed (see the log)", "zh": "失败（见日志）"},
    "export_ok": {"en": "exported and verified", "zh": "已导出并校验通过"},
    "export_failed": {"en": "export failed", "zh": "导出失败"},
}


def t(key: str, lang: str = "en", **values: Any) -> str:
    """The text of ``key`` in ``lang`` ('en' or 'zh'), formatted with ``values``."""
    return TEXT[key][lang].format(**values)
