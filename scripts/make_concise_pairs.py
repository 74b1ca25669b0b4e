"""Write examples/data/concise_pairs.json: bilingual preference pairs whose lesson is "answer directly",
examples/data/concise_answers.json: other questions of the same kinds with their direct answer, and
examples/data/mixed_answers.json: those questions again, half of them answered with filler around the direct
answer (demonstrations of mixed quality, as collected ones often are: an SFT model trained on them pads about
half its answers, which leaves a reward model of "answer directly" something to teach with PPO).

Each pair answers one short question (arithmetic, capitals, opposites, unit conversions; English and Chinese)
with the same correct answer twice: the chosen one plain, the rejected one wrapped in filler (flattery before,
"I hope this helps" after). The preference is short and learnable by the 135M default model on a CPU, and it
generalises: held-out pairs have new questions. The questions avoid the forgetting guard's probes.

Run: .venv/bin/python scripts/make_concise_pairs.py   (seeded: the same file every time)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "examples" / "data" / "concise_pairs.json"
PROMPTS = OUT.with_name("concise_answers.json")
MIXED = OUT.with_name("mixed_answers.json")
SEED = 7

CAPITALS = [("Spain", "Madrid", "西班牙", "马德里"), ("Germany", "Berlin", "德国", "柏林"),
            ("Egypt", "Cairo", "埃及", "开罗"), ("Canada", "Ottawa", "加拿大", "渥太华"),
            ("Australia", "Canberra", "澳大利亚", "堪培拉"), ("Brazil", "Brasília", "巴西", "巴西利亚"),
            ("Russia", "Moscow", "俄罗斯", "莫斯科"), ("India", "New Delhi", "印度", "新德里"),
            ("Kenya", "Nairobi", "肯尼亚", "内罗毕"), ("Mexico", "Mexico City", "墨西哥", "墨西哥城"),
            ("Greece", "Athens", "希腊", "雅典"), ("Portugal", "Lisbon", "葡萄牙", "里斯本"),
            ("Norway", "Oslo", "挪威", "奥斯陆"), ("Sweden", "Stockholm", "瑞典", "斯德哥尔摩"),
            ("Thailand", "Bangkok", "泰国", "曼谷"), ("Vietnam", "Hanoi", "越南", "河内"),
            ("Argentina", "Buenos Aires", "阿根廷", "布宜诺斯艾利斯"), ("Peru", "Lima", "秘鲁", "利马"),
            ("Turkey", "Ankara", "土耳其", "安卡拉"), ("Poland", "Warsaw", "波兰", "华沙"),
            ("Austria", "Vienna", "奥地利", "维也纳"), ("Ireland", "Dublin", "爱尔兰", "都柏林"),
            ("South Korea", "Seoul", "韩国", "首尔"), ("Indonesia", "Jakarta", "印度尼西亚", "雅加达")]
OPPOSITES_EN = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("early", "late"), ("full", "empty"),
                ("light", "dark"), ("strong", "weak"), ("open", "closed"), ("rich", "poor"), ("high", "low"),
                ("young", "old"), ("wet", "dry"), ("hard", "soft"), ("loud", "quiet"), ("thick", "thin"),
                ("first", "last"), ("push", "pull"), ("win", "lose"), ("buy", "sell"), ("remember", "forget")]
OPPOSITES_ZH = [("大", "小"), ("多", "少"), ("长", "短"), ("快", "慢"), ("冷", "热"), ("新", "旧"), ("高", "矮"),
                ("远", "近"), ("黑", "白"), ("开", "关"), ("前", "后"), ("左", "右"), ("胖", "瘦"),
                ("早", "晚"), ("轻", "重"), ("深", "浅"), ("干净", "肮脏"), ("简单", "复杂"), ("安全", "危险"),
                ("成功", "失败")]
FILLER_EN = (["Great question! I'm really glad you asked me this. ",
              "Well, let me think about this very carefully for a moment. ",
              "Oh, that is such an interesting thing to wonder about! ",
              "Sure! Before I answer, it's worth saying that questions like this matter a lot. "],
             [" I hope this helps! Let me know if you have any other questions.",
              " Feel free to ask me anything else, I'm always happy to help!",
              " Does that make sense? I'm here whenever you need more help."])
FILLER_ZH = (["这是一个非常好的问题！很高兴你问我这个。", "嗯，让我仔细想一想这个问题。", "哇，这个问题真有意思！",
              "好的！在回答之前，我想说这类问题非常重要。"],
             ["希望这对你有帮助！如果还有其他问题，请随时问我。", "还有什么想知道的吗？我随时乐意帮忙！",
              "这样解释清楚吗？需要更多帮助的话随时找我。"])


def questions(rng: random.Random) -> list[tuple[str, str, str]]:
    """(language, question, direct answer) for every family."""
    out = []
    for en, cap_en, zh, cap_zh in CAPITALS:
        out += [("en", f"What is the capital of {en}?", f"The capital of {en} is {cap_en}."),
                ("zh", f"{zh}的首都是哪里？", f"{zh}的首都是{cap_zh}。")]
    for a, b in OPPOSITES_EN:
        out += [("en", f"What is the opposite of '{a}'?", f"The opposite of '{a}' is '{b}'."),
                ("en", f"What is the opposite of '{b}'?", f"The opposite of '{b}' is '{a}'.")]
    for a, b in OPPOSITES_ZH:
        out += [("zh", f"“{a}”的反义词是什么？", f"“{a}”的反义词是“{b}”。"),
                ("zh", f"“{b}”的反义词是什么？", f"“{b}”的反义词是“{a}”。")]
    for _ in range(90):
        a, b = rng.randint(2, 60), rng.randint(2, 40)
        op = rng.choice(["plus", "minus", "times"])
        value = {"plus": a + b, "minus": a - b, "times": a * b}[op]
        zh_op = {"plus": "加", "minus": "减", "times": "乘以"}[op]
        if rng.random() < 0.5:
            out.append(("en", f"What is {a} {op} {b}?", f"{a} {op} {b} is {value}."))
        else:
            out.append(("zh", f"{a}{zh_op}{b}等于多少？", f"{a}{zh_op}{b}等于{value}。"))
    for n in range(2, 22):
        out += [("en", f"How many centimetres are in {n} metres?", f"{n} metres are {n * 100} centimetres."),
                ("zh", f"{n}公斤等于多少克？", f"{n}公斤等于{n * 1000}克。")]
    return out


def prompts(rng: random.Random, taken: set[str]) -> list[dict[str, str]]:
    """Questions of the same families that no pair uses, with their direct answer (for SFT, PPO, GRPO)."""
    out = []
    while len(out) < 160:
        a, b = rng.randint(2, 60), rng.randint(2, 40)
        op = rng.choice(["plus", "minus", "times"])
        value = {"plus": a + b, "minus": a - b, "times": a * b}[op]
        zh_op = {"plus": "加", "minus": "减", "times": "乘以"}[op]
        q, ans = ((f"What is {a} {op} {b}?", f"{a} {op} {b} is {value}.") if rng.random() < 0.5 else
                  (f"{a}{zh_op}{b}等于多少？", f"{a}{zh_op}{b}等于{value}。"))
        if q not in taken:
            taken.add(q)
            out.append({"instruction": q, "input": "", "output": ans})
    for n in range(2, 22):
        out += [{"instruction": f"How many grams are in {n} kilograms?", "input": "",
                 "output": f"{n} kilograms are {n * 1000} grams."},
                {"instruction": f"{n}米等于多少厘米？", "input": "", "output": f"{n}米等于{n * 100}厘米。"}]
    rng.shuffle(out)
    return out


def padded(rng: random.Random, records: list[dict[str, str]], share: float = 0.5) -> list[dict[str, str]]:
    """``records`` with about ``share`` of the answers wrapped in filler of their language."""
    out = []
    for r in records:
        before, after = FILLER_ZH if any("\u4e00" <= ch <= "\u9fff" for ch in r["instruction"]) else FILLER_EN
        answer = rng.choice(before) + r["output"] + rng.choice(after) if rng.random() < share else r["output"]
        out.append({**r, "output": answer})
    return out


def main() -> None:
    rng = random.Random(SEED)
    records = []
    seen = set()
    for lang, question, answer in questions(rng):
        if question in seen:
            continue
        seen.add(question)
        before, after = FILLER_EN if lang == "en" else FILLER_ZH
        records.append({"instruction": question, "input": "", "chosen": answer,
                        "rejected": rng.choice(before) + answer + rng.choice(after)})
    rng.shuffle(records)
    OUT.write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(records)} pairs -> {OUT}")
    single = prompts(rng, seen)
    PROMPTS.write_text(json.dumps(single, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(single)} questions with direct answers -> {PROMPTS}")
    mixed = padded(random.Random(SEED + 1), single)  # its own stream: the two files above stay as they were
    MIXED.write_text(json.dumps(mixed, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(mixed)} questions, {sum(m != s for m, s in zip(mixed, single, strict=True))} answers padded -> {MIXED}")


if __name__ == "__main__":
    main()
