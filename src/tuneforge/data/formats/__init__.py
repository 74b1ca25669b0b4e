"""Input formats: a registry of presets (name -> FormatSpec) over three parsing families.

Every preset maps canonical column roles (LLaMA-Factory's names: prompt, query, response, history,
system, tools, messages, chosen, rejected, kto_tag, text) to the keys of a record. LLaMA-Factory
``dataset_info.json`` entries become specs the same way, so both paths share one parser.
"""

from tuneforge.data.formats.spec import FORMATS, FormatSpec, detect_format, parse_record

__all__ = ["FORMATS", "FormatSpec", "detect_format", "parse_record"]
