"""`lawbench`: the scoring of LawBench (open-compass/LawBench, 20 Chinese legal sub-tasks), one metric for
all of them, dispatched on each example's context.

Inputs: `preds` are the model outputs, `refs` the items' raw `answer` strings as released, and
`contexts[i]` a dict {"subtask": "<id>"} (its JSON text, or the bare id, is accepted too). Sub-task 2-1
also needs the sentence to proofread: {"subtask": "2-1", "question": <the item's question>} (or
"source": <the sentence>); without it 2-1 raises ValueError. An unknown sub-task id, or a reference that
does not have the form LawBench asserts for its sub-task, raises ValueError naming the sub-task.

Result: `score` is the mean over the sub-tasks present of each sub-task's score, LawBench's overall
("hybrid") score restricted to the sub-tasks in the split. Each sub-task is aggregated as LawBench does
(the mean of the item scores, except 2-1: a corpus-level F0.5, and 3-4/3-5: the normalised mean
log-distance). `per_example` is the item's own score in [0, 1] (see each sub-task); items LawBench leaves
out of its aggregate (3-4/3-5 death and life sentences, 2-2 answers "赔偿") get 1.0 and
details["skipped"]. `details[i]` has "subtask", "extracted" (what was read from the output),
"abstained" where LawBench counts abstentions (not part of the score, as there) and the sub-task's
specifics. A sub-task whose items are all skipped is left out of the mean.

The definitions follow LawBench's evaluation code (evaluation/evaluation_functions/*.py and
evaluation/utils/*, as also shipped in OpenCompass's opencompass/datasets/lawbench):

- 1-2, 3-6 (JEC_QA, options A-D), 2-8 (options A-E), 2-2 (16 dispute-focus labels), 2-4 (20 consultation
  labels) -- accuracy (`multi_choice_judge`): the options occurring anywhere in the output as plain
  substrings (case-sensitive); correct when the gold option is the only one found; abstained when none
  is. So "正确答案：B。" is B, while "B，而不是A" is wrong. The gold letter is the reference's character
  after "正确答案：" (1-2), "正确答案:" (3-6) or "[正确答案]" (2-8); 2-2's gold is the text between
  "争议焦点类别：" and the final character; 2-4's gold is the whole reference. (LawBench's README lists
  2-2 as F1/MLC; its evaluation code, followed here, scores it as this accuracy.)
- 2-3 (20 marital labels), 2-9 (20 event types), 3-3 (the 189 charge names) -- F1: the label set found
  as substrings in the output against the gold set ("类别:" ... "。" split on "、" for 2-3; ";"-split for
  2-9; "罪名:" removed then ";"-split for 3-3); per item F1 of the two sets (0 when either is empty);
  sub-task score = mean. A contained label is found too (the output "合同诈骗" also yields "诈骗").
- 3-1 -- F1 of article numbers: the output is split on "、"; in each chunk "第...款" is removed,
  "第X条" becomes X, Chinese numerals become digits (cn2an.transform, "cn2an" mode) and the chunk's first
  digit run is its article; F1 against the gold numbers ("法条:刑法第" and "条" removed, split on "、").
- 3-4, 3-5 -- normalised log-distance: the output's Chinese numerals become digits (cn2an); the predicted
  term is the first "N个月" number, else the first "N月", else 12 x the first "N年"; none found is an
  abstention with distance log(216); else the distance is |log(gold+1) - log(pred+1)| (months). Items
  whose gold is "死刑" or "无期" are skipped. Sub-task score = (log 216 - mean distance) / log 216.
  Per item: (log 216 - distance) / log 216, clipped at 0.
- 3-7 -- accuracy: correct when the gold amount (from "上文涉及到的犯罪金额:X元。") equals, as a float, one
  of the numbers `\\d+\\.?\\d*` in the output (so "1,500" is read as 1 and 500); abstained with no number.
- 1-1, 2-7, 3-2, 3-8 -- ROUGE-L F of rouge_chinese on jieba words: each text is cut with jieba (default
  mode) and joined by spaces; an output that is blank after that becomes "无内容"; rouge_chinese's
  sentence cut and whitespace normalisation are applied and the words of all sentences are joined into
  one sequence; F = 2PR / (P + R + 1e-8) from the LCS of the two word sequences (a perfect output so
  scores 1/(1 + 5e-9), not exactly 1). 1-1 first removes "答案:" from the reference (not from the
  output). Sub-task score = mean.
- 2-5 -- reading-comprehension F1 (CJRC/CAIL2019 `compute_f1`): "回答:" removed from the reference only;
  both texts lower-cased and reduced to their letters and digits (str.isalpha/isdigit), compared as
  character multisets; F1 (both empty = 1, one empty = 0). Mean.
- 2-6 -- soft-F1 of extracted entities: reference "type:value;type:value" (empty = no entity); from the
  output, for each of the 10 entity types each occurrence immediately followed by ":" or "：" (and
  ending more than 2 characters before the end of the output) gives the value up to the next space or
  newline (the last occurrence wins; "无" and "未提及" are ignored). Item score: with an empty reference
  1 if nothing was extracted else 0; otherwise P = sum of the per-type char-F1s (2-5's F1) over the
  predicted types / number of predicted types, R = the same sum / number of gold types,
  2PR / (P + R + 1e-10). So a gold answer echoed on one line is read as one long value per type
  (LawBench's format is one "type:value" per line). Mean.
- 2-10 -- soft-F1 of trigger words: reference and output are split on ";" and compared position by
  position (zip, 2-5's char-F1); P = sum / number of output items, R = sum / number of gold items,
  2PR / (P + R + 1e-10). Mean.
- 2-1 -- F0.5 of ChERRANT at character level (corpus level), as LawBench runs it: source = the first
  line of the question (after "句子：\\n" when the question holds the whole prompt), tabs/newlines removed;
  the output has newlines and tabs removed, is cut to len(reference) + 5 characters when longer than
  that, and becomes "无内容" when empty; all whitespace is then removed from source, output and
  reference. Each (source, output) and (source, reference) pair is aligned by ChERRANT's weighted
  edit distance with transpositions, every cheapest alignment is kept ("all" strategy; only the first
  when the lengths differ by more than 10), edits are merged and classified as ChERRANT does at "char"
  granularity, and the hypothesis and reference edit sets (start, end, correction) of all items are
  compared (span-based correction, all alignments of a sentence pooled under one annotator, as in
  LawBench's M2 files). Score = F0.5 of the summed TP/FP/FN, rounded to 4 decimals as LawBench prints
  it; per item: that item's F0.5 (1.0 when neither side has an edit).

Deviations from LawBench, all in 2-1's ChERRANT unless stated:
- The substitution cost's semantic term uses the Cilin thesaurus (data/cilin.txt) and its spelling term
  a character confusion set (data/confusion_dict.txt); these data files are not shipped here, so every
  character is "unknown" to Cilin (semantic cost 4/6, ChERRANT's value for unknown words) and the
  confusion set is empty. Pinyin similarity (pypinyin, heteronyms), the punctuation term and the rest
  of the cost are as in ChERRANT. This only changes which of several near-cheapest alignments is chosen.
- ChERRANT converts each corrected sentence to Simplified Chinese with OpenCC ("t2s") before aligning;
  that conversion is not done here (outputs and references are used as written).
- LawBench annotates each sentence under a 10-second wall-clock timeout and, on timeout, replaces the
  corrected sentence by "无". Here the timeout is a deterministic work budget: the time LawBench's
  implementation would spend, estimated from operation counts (its dynamic programme, transposition
  search and enumeration of the cheapest alignments; per-operation costs fitted, within about 30%, by
  timing a transcription of it on one machine), against 10 seconds; over it the sentence is replaced
  by "无" as LawBench does. Only long, heavily rewritten outputs get there. details["timed_out"] says
  when.
- A carriage return in an output is treated as whitespace (LawBench's file round trip would split the
  line and abort).
- Everywhere: cn2an raising on an odd text leaves that text unconverted (LawBench would abort); a
  ROUGE reference that is empty after tokenisation scores 0 (rouge_chinese raises); the normalised
  log-distance sub-task score is clipped at 0 (LawBench's can go negative when the mean distance exceeds
  log 216); scores are in [0, 1] (OpenCompass prints them x 100).

Dependencies: jieba (ROUGE-L tokenisation), cn2an (3-1, 3-4, 3-5), pypinyin (2-1). Each is imported on
first use, so sub-tasks that do not need it run without it.
"""

from __future__ import annotations

import json
import math
import re
import string
import warnings
from collections import Counter
from functools import lru_cache
from itertools import groupby
from typing import Any, Sequence

from trex_ray.metrics import Metric, Scored

# --------------------------------------------------------------------------------------------------
# the sub-tasks (README_EN's task table; "function" is the LawBench evaluation function that scores it)

SUBTASKS: dict[str, dict] = {
    "1-1": {"name": "Article Recitation", "metric": "ROUGE-L", "type": "Generation", "source": "FLK",
            "function": "ftcs"},
    "1-2": {"name": "Knowledge Question Answering", "metric": "Accuracy", "type": "SLC", "source": "JEC_QA",
            "function": "jec_kd"},
    "2-1": {"name": "Document Proofread", "metric": "F0.5", "type": "Generation", "source": "CAIL2022",
            "function": "wsjd"},
    "2-2": {"name": "Dispute Focus Identification", "metric": "Accuracy", "type": "SLC", "source": "LAIC2021",
            "function": "jdzy"},
    "2-3": {"name": "Marital Disputes Identification", "metric": "F1", "type": "MLC", "source": "AIStudio",
            "function": "wbfl"},
    "2-4": {"name": "Issue Topic Identification", "metric": "Accuracy", "type": "SLC", "source": "CrimeKgAssitant",
            "function": "zxfl"},
    "2-5": {"name": "Reading Comprehension", "metric": "rc-F1", "type": "Extraction", "source": "CAIL2019",
            "function": "ydlj"},
    "2-6": {"name": "Named Entity Recognition", "metric": "soft-F1", "type": "Extraction", "source": "CAIL2021",
            "function": "xxcq"},
    "2-7": {"name": "Opinion Summarization", "metric": "ROUGE-L", "type": "Generation", "source": "CAIL2022",
            "function": "yqzy"},
    "2-8": {"name": "Argument Mining", "metric": "Accuracy", "type": "SLC", "source": "CAIL2022",
            "function": "lblj"},
    "2-9": {"name": "Event Detection", "metric": "F1", "type": "MLC", "source": "LEVEN", "function": "sjjc"},
    "2-10": {"name": "Trigger Word Extraction", "metric": "soft-F1", "type": "Extraction", "source": "LEVEN",
             "function": "cfcy"},
    "3-1": {"name": "Fact-based Article Prediction", "metric": "F1", "type": "MLC", "source": "CAIL2018",
            "function": "ljp_article"},
    "3-2": {"name": "Scene-based Article Prediction", "metric": "ROUGE-L", "type": "Generation",
            "source": "LawGPT_zh Project", "function": "cjft"},
    "3-3": {"name": "Charge Prediction", "metric": "F1", "type": "MLC", "source": "CAIL2018",
            "function": "ljp_accusation"},
    "3-4": {"name": "Prison Term Prediction w/o Article", "metric": "Normalized log-distance", "type": "Regression",
            "source": "CAIL2018", "function": "ljp_imprison"},
    "3-5": {"name": "Prison Term Prediction w/ Article", "metric": "Normalized log-distance", "type": "Regression",
            "source": "CAIL2018", "function": "ljp_imprison"},
    "3-6": {"name": "Case Analysis", "metric": "Accuracy", "type": "SLC", "source": "JEC_QA", "function": "jec_ac"},
    "3-7": {"name": "Criminal Damages Calculation", "metric": "Accuracy", "type": "Regression", "source": "LAIC2021",
            "function": "jetq"},
    "3-8": {"name": "Consultation", "metric": "ROUGE-L", "type": "Generation", "source": "hualv.com",
            "function": "flzx"},
}

# --------------------------------------------------------------------------------------------------
# label sets (LawBench's option lists, in its order)

DISPUTE_FOCI = ("诉讼主体", "租金情况", "利息", "本金争议", "责任认定", "责任划分", "损失认定及处理", "原审判决是否适当",
                "合同效力", "财产分割", "责任承担", "鉴定结论采信问题", "诉讼时效", "违约", "合同解除", "肇事逃逸")
MARITAL_LABELS = ("婚后有子女", "限制行为能力子女抚养", "有夫妻共同财产", "支付抚养费", "不动产分割", "婚后分局",
                  "二次起诉离婚", "按月给付抚养费", "准予离婚", "有夫妻共同债务", "婚前个人财产", "法定离婚", "不履行家庭义务",
                  "存在非婚生子", "适当帮助", "不履行离婚协议", "损害赔偿", "感情不和分居满二年", "子女随非抚养权人生活",
                  "婚后个人财产")
CONSULTATION_TOPICS = ("婚姻家庭", "劳动纠纷", "交通事故", "债权债务", "刑事辩护", "合同纠纷", "房产纠纷", "侵权", "公司法",
                       "医疗纠纷", "拆迁安置", "行政诉讼", "建设工程", "知识产权", "综合咨询", "人身损害", "涉外法律", "海事海商",
                       "消费权益", "抵押担保")
EVENT_TYPES = ("支付/给付", "欺骗", "搜查/扣押", "要求/请求", "卖出", "买入", "获利", "拘捕", "鉴定", "同意/接受", "供述", "联络",
               "帮助/救助", "租用/借用", "受伤", "伪造", "卖淫", "伤害人身", "赔偿", "归还/偿还")
ENTITY_TYPES = ("犯罪嫌疑人", "受害人", "被盗货币", "物品价值", "盗窃获利", "被盗物品", "作案工具", "时间", "地点", "组织机构")
CHARGES = tuple("""
侮辱 违法发放贷款 失火 票据诈骗 帮助犯罪分子逃避处罚 重大责任事故 对非国家工作人员行贿 非法制造、销售非法制造的注册商标标识
非法制造、买卖、运输、邮寄、储存枪支、弹药、爆炸物 非法获取公民个人信息 扰乱无线电通讯管理秩序 非法持有、私藏枪支、弹药
拒不执行判决、裁定 虚开发票 巨额财产来源不明 组织、领导、参加黑社会性质组织 非法获取国家秘密 以危险方法危害公共安全 非法持有毒品
聚众扰乱公共场所秩序、交通秩序 包庇毒品犯罪分子 滥伐林木 伪造公司、企业、事业单位、人民团体印章 非法占用农用地 走私废物 串通投标
非法采伐、毁坏国家重点保护植物 冒充军人招摇撞骗 玩忽职守 重婚 招收公务员、学生徇私舞弊 组织、领导传销活动
非法猎捕、杀害珍贵、濒危野生动物 侵犯著作权 非法种植毒品原植物 伪造、变造、买卖武装部队公文、证件、印章 倒卖文物
伪造、变造居民身份证 滥用职权 诽谤 猥亵儿童 非法转让、倒卖土地使用权 挪用公款 污染环境 出售、购买、运输假币 敲诈勒索 高利转贷
故意伤害 持有、使用假币 单位受贿 强奸 引诱、容留、介绍卖淫 虐待 生产、销售伪劣农药、兽药、化肥、种子 妨害公务 容留他人吸毒
拐骗儿童 强制猥亵、侮辱妇女 非法处置查封、扣押、冻结的财产 骗取贷款、票据承兑、金融票证 强迫他人吸毒 非法拘禁
非法携带枪支、弹药、管制刀具、危险物品危及公共安全 绑架 聚众斗殴 破坏计算机信息系统 制造、贩卖、传播淫秽物品 虐待被监管人 贷款诈骗
赌博 徇私舞弊不征、少征税款 盗窃、抢夺枪支、弹药、爆炸物、危险物质 故意杀人 介绍贿赂 提供侵入、非法控制计算机信息系统程序、工具
编造、故意传播虚假恐怖信息 妨害作证 强迫卖淫 走私、贩卖、运输、制造毒品 伪证 拐卖妇女、儿童 过失损坏武器装备、军事设施、军事通信
破坏广播电视设施、公用电信设施 洗钱 职务侵占 倒卖车票、船票 抢劫 侵占 掩饰、隐瞒犯罪所得、犯罪所得收益 徇私舞弊不移交刑事案件
引诱、教唆、欺骗他人吸毒 遗弃 生产、销售伪劣产品 放火 非法采矿 对单位行贿 盗窃、抢夺枪支、弹药、爆炸物 破坏易燃易爆设备
妨害信用卡管理 制作、复制、出版、贩卖、传播淫秽物品牟利 金融凭证诈骗 私分国有资产 走私国家禁止进出口的货物、物品 假冒注册商标
危险物品肇事 走私普通货物、物品 经济犯 虚报注册资本 盗掘古文化遗址、古墓葬 传播淫秽物品 窝藏、包庇 拒不支付劳动报酬 行贿 开设赌场
传授犯罪方法 协助组织卖淫 保险诈骗 破坏生产经营 破坏交通设施 打击报复证人 非法侵入住宅 非国家工作人员受贿 过失致人重伤
伪造、变造金融票证 窝藏、转移、隐瞒毒品、毒赃 帮助毁灭、伪造证据 走私珍贵动物、珍贵动物制品 生产、销售假药 逃税 挪用特定款物
聚众扰乱社会秩序 组织、强迫、引诱、容留、介绍卖淫 合同诈骗 非法生产、销售间谍专用器材 破坏交通工具 传播性病 强迫交易
隐匿、故意销毁会计凭证、会计帐簿、财务会计报告 非法组织卖血 强迫劳动 破坏电力设备 销售假冒注册商标的商品 收买被拐卖的妇女、儿童
诬告陷害 脱逃 非法经营 徇私枉法 信用卡诈骗 生产、销售不符合安全标准的食品 非法行医 伪造货币 动植物检疫徇私舞弊 单位行贿
破坏监管秩序 盗窃 盗伐林木 重大劳动安全事故 非法吸收公众存款 非法制造、出售非法制造的发票 非法狩猎 组织卖淫
非法买卖、运输、携带、持有毒品原植物种子、幼苗 挪用资金 诈骗 伪造、变造、买卖国家机关公文、证件、印章 持有伪造的发票 贪污
非法生产、买卖警用装备 投放危险物质 伪造、倒卖伪造的有价票证 集资诈骗 抢夺 生产、销售有毒、有害食品 非法捕捞水产品 过失致人死亡
非法买卖制毒物品 虚开增值税专用发票、用于骗取出口退税、抵扣税款发票 寻衅滋事 危险驾驶 故意毁坏财物 招摇撞骗 盗窃、侮辱尸体
走私武器、弹药 非法收购、运输、加工、出售国家重点保护植物、国家重点保护植物制品 非法出售发票 劫持船只、汽车 受贿 聚众哄抢 交通肇事
""".split())

_LOG216 = math.log(216)

# --------------------------------------------------------------------------------------------------
# shared primitives


def _set_f1(pred: set, gold: set) -> float:
    inter = len(pred & gold)
    precision = inter / len(pred) if pred else 0
    recall = inter / len(gold) if gold else 0
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _found(text: str, options: Sequence[str]) -> list[str]:
    return [o for o in options if o in text]


def _choice(pred: str, options: Sequence[str], gold: str) -> tuple[float, dict]:
    """multi_choice_judge: correct iff the gold option is the only option occurring in the output."""
    found = _found(pred, options)
    return float(found == [gold]), {"extracted": found, "gold": gold, "abstained": not found}


def _rc_tokens(s: str) -> list[str]:
    return [ch for ch in s.lower() if ch.isdigit() or ch.isalpha()] if s else []


def rc_f1(gold: str, pred: str) -> float:
    """CJRC's character F1 (lower-cased, letters and digits only; both empty = 1, one empty = 0)."""
    g, p = _rc_tokens(gold), _rc_tokens(pred)
    if not g or not p:
        return float(g == p)
    same = sum((Counter(g) & Counter(p)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return (2 * precision * recall) / (precision + recall)


@lru_cache(maxsize=1)
def _jieba():
    try:
        import jieba
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("the lawbench metric's ROUGE-L sub-tasks need jieba: pip install jieba") from e
    return jieba


# rouge_chinese's sentence cut: a break after 。！？? (unless a closing quote follows), after six dots,
# after two ellipses, and after a closing quote that follows 。！？? (unless more punctuation follows)
_SENT_BREAKS = (
    (re.compile("([。！？?])([^”’])"), "\\1\n\\2"),
    (re.compile("(\\.{6})([^”’])"), "\\1\n\\2"),
    (re.compile("(…{2})([^”’])"), "\\1\n\\2"),
    (re.compile("([。！？?][”’])([^，。！？?])"), "\\1\n\\2"),
)


def _rouge_words(spaced: str) -> list[str]:
    for pattern, repl in _SENT_BREAKS:
        spaced = pattern.sub(repl, spaced)
    words: list[str] = []
    for sent in spaced.rstrip().split("\n"):
        if len(sent) > 0:
            words.extend(" ".join(sent.split()).split(" "))
    return words


def _lcs_len(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (bit-parallel, Hyyro 2004)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l(pred: str, ref: str) -> float:
    """LawBench's `compute_rouge` ROUGE-L F for one pair (jieba words, rouge_chinese's definition)."""
    cut = _jieba().cut
    hyp = " ".join(cut(pred))
    if hyp.strip() == "":
        hyp = "无内容"
    hyp_words, ref_words = _rouge_words(hyp), _rouge_words(" ".join(cut(ref)))
    if not ref_words:
        return 0.0
    llcs = _lcs_len(ref_words, hyp_words)
    r, p = llcs / len(ref_words), llcs / len(hyp_words)
    return 2.0 * ((p * r) / (p + r + 1e-8))


def _cn2an(text: str) -> str:
    try:
        import cn2an
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("the lawbench metric's sub-tasks 3-1, 3-4 and 3-5 need cn2an: pip install cn2an") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cn2an.transform(text, "cn2an")
        except Exception:  # noqa: BLE001 - an odd text stays unconverted (see the docstring)
            return text


class _BadRef(ValueError):
    pass


# --------------------------------------------------------------------------------------------------
# per-item scorers: (pred, ref, ctx) -> (score in [0, 1] or None when LawBench skips the item, details)


def _choice_item(prefix: str, pos: int, letters: str):
    def item(pred, ref, ctx):
        if not (ref.startswith(prefix) and len(ref) > pos and ref[pos] in letters):
            raise _BadRef(f"expected {prefix!r} followed by one of {letters}")
        return _choice(pred, letters, ref[pos])
    return item


def _item_2_2(pred, ref, ctx):
    gold = ref[7:-1]
    if gold == "赔偿":  # LawBench: "dataset imperfection", left out
        return None, {"skipped": "gold label 赔偿 is not an option"}
    if not (ref.startswith("争议焦点类别：") and gold in DISPUTE_FOCI):
        raise _BadRef("expected 争议焦点类别：<label>。 with one of the 16 labels")
    return _choice(pred, DISPUTE_FOCI, gold)


def _item_2_4(pred, ref, ctx):
    if ref not in CONSULTATION_TOPICS:
        raise _BadRef("expected one of the 20 consultation topics")
    return _choice(pred, CONSULTATION_TOPICS, ref)


def _set_item(options: Sequence[str], gold_set):
    def item(pred, ref, ctx):
        gold = gold_set(ref)
        found = _found(pred, options)
        return _set_f1(set(found), gold), {"extracted": found, "gold": sorted(gold), "abstained": not found}
    return item


def _gold_2_3(ref: str) -> set:
    if not (ref.startswith("类别:") and ref.endswith("。")):
        raise _BadRef("expected 类别:<labels>。")
    gold = ref[3:-1].split("、")
    if any(g not in MARITAL_LABELS for g in gold):
        raise _BadRef("a gold label is not one of the 20 labels")
    return set(gold)


def _gold_3_3(ref: str) -> set:
    if not ref.startswith("罪名:"):
        raise _BadRef("expected 罪名:<charges>")
    return set(ref.replace("罪名:", "").split(";"))


def _item_3_1(pred, ref, ctx):
    if not (ref.startswith("法条:刑法第") and ref.endswith("条")):
        raise _BadRef("expected 法条:刑法第<numbers>条")
    parts = ref.replace("法条:刑法第", "").replace("条", "").split("、")
    if not all(p.isdigit() and int(p) <= 490 for p in parts):
        raise _BadRef("article numbers must be integers up to 490")
    gold = {int(p) for p in parts}
    found = []
    for chunk in pred.split("、"):
        chunk = chunk.replace("万元", "元")
        chunk = re.sub(r"第(.*?)款", "", chunk)
        chunk = re.sub(r"第(.*?)条", lambda m: m.group(1), chunk)
        digits = re.findall(r"\d+", _cn2an(chunk))
        if digits:
            found.append(int(digits[0]))
    return _set_f1(set(found), gold), {"extracted": sorted(set(found)), "gold": sorted(gold), "abstained": not found}


def prison_months(pred: str) -> int | None:
    """3-4/3-5's reading of a predicted term in months (None: no term found)."""
    text = _cn2an(pred)
    months = [int(x[:-2]) for x in re.findall(r"\d+个月", text)] + [int(x[:-1]) for x in re.findall(r"\d+月", text)]
    if months:
        return months[0]
    years = re.findall(r"\d+年", text)
    return int(years[0][:-1]) * 12 if years else None


def _item_3_4(pred, ref, ctx):
    if "死刑" in ref or "无期" in ref:
        return None, {"skipped": "death or life sentence"}
    if not (ref.startswith("刑期:") and ref.endswith("个月") and ref[3:-2].isdigit()):
        raise _BadRef("expected 刑期:<N>个月")
    gold = int(ref[3:-2])
    got = prison_months(pred)
    dist = _LOG216 if got is None else abs(math.log(gold + 1) - math.log(got + 1))
    return dist, {"extracted": got, "gold": gold, "log_distance": dist, "abstained": got is None}


_AMOUNT = re.compile(r"\d+\.?\d*")


def _item_3_7(pred, ref, ctx):
    if not (ref.startswith("上文涉及到的犯罪金额:") and ref.endswith("元。")):
        raise _BadRef("expected 上文涉及到的犯罪金额:<X>元。")
    body = ref.replace("上文涉及到的犯罪金额:", "")
    if "千元" in body or "万" in body:
        raise _BadRef("the gold amount must be in 元")
    try:
        gold = float(body.replace("元。", ""))
    except ValueError as e:
        raise _BadRef("the gold amount is not a number") from e
    numbers = [float(x) for x in _AMOUNT.findall(pred)]
    return float(gold in numbers), {"extracted": numbers[:20], "gold": gold, "abstained": not numbers}


def _rouge_item(strip: str | None = None):
    def item(pred, ref, ctx):
        s = rouge_l(pred, ref.replace(strip, "") if strip else ref)
        return s, {"rouge_l": s}
    return item


def _item_2_5(pred, ref, ctx):
    s = rc_f1(ref.replace("回答:", ""), pred)
    return s, {"rc_f1": s}


def _entities_ref(ref: str) -> dict:
    out = {}
    if ref.strip() == "":
        return out
    for seg in ref.split(";"):
        parts = seg.split(":")
        if len(parts) < 2:
            raise _BadRef("expected type:value pairs separated by ;")
        out[parts[0]] = parts[1]
    return out


def extract_entities(pred: str) -> dict:
    """2-6's reading of the output: {entity type: value}."""
    out = {}
    for etype in ENTITY_TYPES:
        for m in re.finditer(re.escape(etype), pred):
            end = m.end()
            if end >= len(pred) - 2:
                continue
            if pred[end] in (":", "："):
                value = re.split("\n| ", pred[end + 1:].strip())[0].strip()
                if value not in ("无", "未提及"):
                    out[etype] = value
    return out


def _item_2_6(pred, ref, ctx):
    gold, got = _entities_ref(ref), extract_entities(pred)
    det = {"extracted": got, "gold": gold, "abstained": bool(gold) and not got}
    if not gold:
        return (1.0 if not got else 0.0), det
    hits = [rc_f1(gold[t], v) for t, v in got.items() if t in gold]
    precision = sum(hits) / len(got) if got else 0
    recall = sum(hits) / len(gold)
    return 2 * precision * recall / (precision + recall + 1e-10), det


def _item_2_10(pred, ref, ctx):
    golds, outs = ref.split(";"), pred.split(";")
    hits = [rc_f1(r, h) for r, h in zip(golds, outs)]
    precision, recall = sum(hits) / len(outs), sum(hits) / len(golds)
    return 2 * precision * recall / (precision + recall + 1e-10), {"extracted": outs[:50]}


# --------------------------------------------------------------------------------------------------
# 2-1: ChERRANT (character level) as LawBench runs it

# ChERRANT's two punctuation strings (alignment.py's and merger.py's differ; both include ASCII punctuation)
_ALIGN_PUNCT = ("！？｡＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘'‛“”„‟…‧﹏"
                + string.punctuation)
_MERGE_PUNCT = (string.punctuation
                + "！？｡＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟–—‘'‛“”„‟…‧.")
_MISSING = "[缺失成分]"

# The timeout model (see the docstring): seconds that LawBench's implementation spends per unit of work,
# fitted (least squares, within about 30%) on a transcription of it timed on sentence pairs of 60-260
# characters, and its 10 s limit. The enumeration terms are rough: many cheapest alignments are rare.
_T_CELL = 5.6e-6      # one cell of the dynamic programme (substitution cost, bookkeeping)
_T_TRANS = 3.1e-8     # per token per transposition-search step (it rebuilds both token lists each step)
_T_NODE = 1.5e-6      # per node of the depth-first enumeration of the cheapest alignments
_T_COPY = 2.0e-8      # per element copied while extending a partial alignment
_T_PATH = 2.0e-6      # per element of a complete alignment (reversal, merging, classification)
_TIMEOUT_S = 10.0


@lru_cache(maxsize=65536)
def _pinyin(ch: str) -> frozenset:
    try:
        from pypinyin import Style, pinyin
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("the lawbench metric's sub-task 2-1 needs pypinyin: pip install pypinyin") from e
    return frozenset(pinyin(ch, style=Style.NORMAL, heteronym=True)[0])


def _all_cjk(tok: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" for ch in tok)


@lru_cache(maxsize=1 << 18)
def _sub_cost(a: str, b: str) -> float:
    """ChERRANT's character-level substitution cost (a != b); Cilin unknown, no confusion set."""
    semantic = 4 / 6.0
    if a in _ALIGN_PUNCT and b in _ALIGN_PUNCT:
        pos = 0.0
    elif a not in _ALIGN_PUNCT and b not in _ALIGN_PUNCT:
        pos = 0.25
    else:
        pos = 0.499
    if not (_all_cjk(a) and _all_cjk(b)):
        char = 0.5
    else:
        if len(a) > len(b):
            a, b = b, a
        same_sound = bool(_pinyin(a) & _pinyin(b))
        count = sum(1 for x in a if any(x == y or same_sound for y in b))
        char = (len(a) - count) / (len(a) * 2)
    return semantic + char + pos


def _char_tokens(s: str) -> list[str]:
    return " ".join(s).replace("[ 缺 失 成 分 ]", _MISSING).split(" ")


class _Timeout(Exception):
    pass


def _align(src: list[str], tgt: list[str], budget: float | None, stats: dict | None = None):
    """ChERRANT's alignment: every cheapest edit sequence [(op, i0, i1, j0, j1), ...] (op M, S, D, I or Tk).
    With a budget (seconds of the modelled original), raise _Timeout when the work would exceed it; `stats`
    (if given) receives the work counts."""
    n, m = len(src), len(tgt)
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    oper: list[list[list[str] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = cost[i - 1][0] + 1
        oper[i][0] = ["D"]
    for j in range(1, m + 1):
        cost[0][j] = cost[0][j - 1] + 1
        oper[0][j] = ["I"]
    trans_steps = 0
    for i in range(n):
        s_i, row, nxt = src[i], cost[i], cost[i + 1]
        for j in range(m):
            t_j = tgt[j]
            if s_i == t_j:
                nxt[j + 1] = row[j]
                oper[i + 1][j + 1] = ["M"]
                continue
            del_cost = row[j + 1] + 1
            ins_cost = nxt[j] + 1
            sub_cost = row[j] + _sub_cost(s_i, t_j)
            trans_cost = float("inf")
            k = 1
            diff: dict[str, int] = {s_i: 1}
            diff[t_j] = diff.get(t_j, 0) - 1
            unbalanced = 2
            while i - k >= 0 and j - k >= 0 and cost[i - k + 1][j - k + 1] != cost[i - k][j - k]:
                trans_steps += 1
                for tok, d in ((src[i - k], 1), (tgt[j - k], -1)):
                    old = diff.get(tok, 0)
                    diff[tok] = old + d
                    unbalanced += (old + d != 0) - (old != 0)
                if unbalanced == 0:
                    trans_cost = cost[i - k][j - k] + k
                    break
                k += 1
            costs = (trans_cost, sub_cost, ins_cost, del_cost)
            best = min(costs)
            nxt[j + 1] = best
            ops = []
            for idx, c in enumerate(costs):
                if c == best:
                    ops.append(f"T{k + 1}" if idx == 0 else "SID"[idx - 1])
            oper[i + 1][j + 1] = ops
        if budget is not None:
            spent = (i + 1) * m * _T_CELL + trans_steps * (n + m) * _T_TRANS
            if spent > budget:
                raise _Timeout
    first = abs(n - m) > 10

    def moves(i, j):
        for op in (oper[i][j][:1] if first else oper[i][j]):
            if op in ("M", "S"):
                yield op, i - 1, j - 1, (op, i - 1, i, j - 1, j)
            elif op == "D":
                yield op, i - 1, j, (op, i - 1, i, j, j)
            elif op == "I":
                yield op, i, j - 1, (op, i, i, j - 1, j)
            else:
                k = int(op[1:])
                yield op, i - k, j - k, (op, i - k, i, j - k, j)

    if budget is not None or stats is not None:  # price the enumeration first: paths into each cell, from (n, m)
        ways = [[0] * (m + 1) for _ in range(n + 1)]
        depth = [[0] * (m + 1) for _ in range(n + 1)]  # summed over the paths reaching the cell
        ways[n][m] = 1
        nodes = copies = 0
        for i in range(n, -1, -1):
            for j in range(m, -1, -1):
                w = ways[i][j]
                if not w:
                    continue
                nodes += w
                copies += depth[i][j]
                if i + j == 0:
                    continue
                for _, pi, pj, _ in moves(i, j):
                    ways[pi][pj] += w
                    depth[pi][pj] += depth[i][j] + w
        paths = ways[0][0]
        if stats is not None:
            stats.update(cells=n * m, trans=trans_steps * (n + m), nodes=nodes, copies=copies, path_len=paths * (n + m))
        spent = (n * m * _T_CELL + trans_steps * (n + m) * _T_TRANS + nodes * _T_NODE + copies * _T_COPY
                 + paths * (n + m) * _T_PATH)
        if budget is not None and spent > budget:
            raise _Timeout
    out = []
    stack = [(n, m, [])]
    while stack:  # depth-first, the first op of a cell first, as ChERRANT enumerates them
        i, j, seq = stack.pop()
        if i + j == 0:
            out.append(seq[::-1])
            continue
        for _, pi, pj, step in reversed(list(moves(i, j))):
            stack.append((pi, pj, seq + [step]))
    return out


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _merge(seq: list, tag: str) -> list:
    return [(tag, seq[0][1], seq[-1][2], seq[0][3], seq[-1][4])] if seq else seq


def _process_group(seq: list) -> list:
    if len(seq) <= 1:
        return seq
    ops = {e[0] for e in seq}
    if ops == {"D"} or ops == {"I"}:
        return _merge(seq, ops.pop())
    if ops == {"D", "I"}:
        return seq
    if ops == {"M"}:
        return _merge(seq, "M")
    return _merge(seq, "S")  # all S (merged at char granularity) or S mixed with D/I


def _merge_edits(align: list, src: list[str], tgt: list[str]) -> list:
    """ChERRANT's Merger at char granularity: token edits -> span edits."""
    edits = []
    for key, grp in groupby(align, lambda e: e[0][0] if e[0][0] in ("M", "T") else False):
        grp = list(grp)
        edits.extend(grp if key == "T" else _process_group(grp))

    def s_span(e):
        return "".join(src[e[1]:e[2]])

    def t_span(e):
        return "".join(tgt[e[3]:e[4]])

    def as_t(i):
        return _merge(edits[i:i + 3], "T" + str(edits[i + 2][2] - edits[i][1]))

    kept = []
    i = 0
    while i < len(edits):
        e1 = edits[i][0][0]
        if i < len(edits) - 2:
            e2, e3 = edits[i + 1][0][0], edits[i + 2][0][0]
            if e1 == "S" and e2 == "M" and e3 == "S":  # a swap around a kept span
                w1, w2, w3, w4 = s_span(edits[i]), t_span(edits[i]), s_span(edits[i + 2]), t_span(edits[i + 2])
                if min(len(w1), len(w2), len(w3), len(w4)) == 1:
                    swap = w1 == w4 and w2 == w3
                else:
                    swap = _levenshtein(w1, w4) <= 1 and _levenshtein(w2, w3) <= 1
                if swap:
                    kept.extend(as_t(i))
                    i += 3
                else:
                    kept.append(edits[i])
                    i += 1
            elif (e1 == "D" and e2 in ("M", "T") and e3 == "I") or (e1 == "I" and e2 in ("M", "T") and e3 == "D"):
                if e1 == "D":
                    a, b = s_span(edits[i]), t_span(edits[i + 2])
                else:
                    a, b = s_span(edits[i + 2]), t_span(edits[i])
                if len(a) < len(b):
                    a, b = b, a
                swap = False
                if a not in _MERGE_PUNCT and b not in _MERGE_PUNCT and len(a) - len(b) <= 1:
                    if len(b) == 1:
                        swap = a == b
                    else:
                        swap = _levenshtein(a, b) <= 1 or (len(a) == len(b) and b in a + a)
                if swap:
                    kept.extend(as_t(i))
                    i += 3
                else:
                    kept.append(edits[i])
                    i += 1
            else:
                if e1 != "M":
                    kept.append(edits[i])
                i += 1
        else:
            if e1 != "M":
                kept.append(edits[i])
            i += 1

    out = []
    for e in kept:  # drop no-op spans; trim a substitution's shared head and tail
        span1, span2 = s_span(e), t_span(e)
        if span1 == span2:
            continue
        if e[0] != "S":
            out.append(e)
            continue
        changed = False
        common, tmp_start1 = "", e[1]
        for k in range(e[1], e[2]):
            if not span2.startswith(common + src[k]):
                break
            common += src[k]
            tmp_start1 = k + 1
        start1, start2 = e[1], e[3]
        if common:
            acc = ""
            for k in range(e[3], e[4]):
                acc += tgt[k]
                if acc == common:
                    start1, start2 = tmp_start1, k + 1
                    changed = True
                    break
                if len(acc) > len(common):
                    break
        common, end1, end2, tmp_end1 = "", e[2], e[4], e[2]
        for k in reversed(range(start1, e[2])):
            if not span2.endswith(src[k] + common):
                break
            common = src[k] + common
            tmp_end1 = k
        if common:
            acc = ""
            for k in reversed(range(start2, e[4])):
                acc = tgt[k] + acc
                if acc == common:
                    end1, end2 = tmp_end1, k
                    changed = True
                    break
                if len(acc) > len(common):
                    break
        if not changed:
            out.append(e)
        elif start1 == end1:
            out.append(("I", start1, end1, start2, end2))
        elif start2 == end2:
            out.append(("D", start1, end1, start2, end2))
        else:
            out.append(("S", start1, end1, start2, end2))
    return out


def _classify(edits: list, tgt: list[str]) -> list[tuple]:
    """(start, end, category, correction) per edit, as ChERRANT's char-level classifier writes them."""
    out = []
    for e in edits:
        kind = e[0][0]
        cor = "".join(tgt[e[3]:e[4]])
        if kind == "T":
            out.append((e[1], e[2], "W", cor))
        elif kind == "D":
            out.append((e[1], e[2], "R", "-NONE-"))
        elif kind == "I":
            out.append((e[1], e[2], "M", cor))
        elif kind == "S":
            out.append((e[1], e[2], "S", cor))
        else:  # pragma: no cover - the merger never leaves a match
            raise AssertionError(f"unexpected edit {e}")
    return out


def _annotate(src: list[str], tgt: list[str], budget: float | None) -> list[tuple]:
    """ChERRANT's Annotator ("all" strategy): the M2 edits of one (source, corrected) pair."""
    src_str, tgt_str = "".join(src), "".join(tgt)
    if tgt_str == "没有错误" or src_str == tgt_str:
        return [(-1, -1, "noop", "-NONE-")]
    if tgt_str == "无法标注":
        return [(-1, -1, "NA", "-NONE-")]
    seen, out = [], []
    for align in _align(src, tgt, budget):
        edits = _merge_edits(align, src, tgt)
        if edits not in seen:
            seen.append(edits)
            out.extend(_classify(edits, tgt))
    return out


def m2_edits(source: str, corrected: str, timeout: bool = True) -> tuple[list[tuple], bool]:
    """The M2 edits LawBench's ChERRANT writes for one pair (whitespace already removed), and whether the
    (modelled) timeout replaced the corrected sentence by "无"."""
    src = _char_tokens(source)
    try:
        return _annotate(src, _char_tokens(corrected), _TIMEOUT_S if timeout else None), False
    except _Timeout:
        return _annotate(src, _char_tokens("无"), None), True


def _edit_dict(edits: list[tuple]) -> dict:
    out: dict[tuple, list[str]] = {}
    for start, end, cat, cor in edits or [(-1, -1, "noop", "-NONE-")]:
        out.setdefault((start, end, cor), []).append(cat)
    return out


def _compare(hyp: dict, ref: dict) -> tuple[int, int, int]:
    if len(ref) == 1 and next(iter(ref.values()))[0] == "NA":
        return 0, 0, 0
    tp = fp = fn = 0
    for key, cats in hyp.items():
        if cats[0] == "noop":
            continue
        if key in ref:
            tp += len(ref[key])
        else:
            fp += len(cats)
    for key, cats in ref.items():
        if cats[0] != "noop" and key not in hyp:
            fn += len(cats)
    return tp, fp, fn


def f_beta(tp: int, fp: int, fn: int, beta: float = 0.5) -> float:
    p = tp / (tp + fp) if fp else 1.0
    r = tp / (tp + fn) if fn else 1.0
    return (1 + beta ** 2) * p * r / (beta ** 2 * p + r) if p + r else 0.0


def _no_ws(s: str) -> str:
    return "".join(s.split())


def _source_sentence(ctx: dict) -> str:
    if ctx.get("source") is not None:
        line = str(ctx["source"])
    elif ctx.get("question") is not None:
        q = str(ctx["question"])
        marker = "句子：\n"
        line = (q[q.index(marker) + len(marker):] if marker in q else q).split("\n")[0]
    else:
        raise ValueError("lawbench sub-task 2-1 (Document Proofread) needs the sentence to proofread in its "
                         "context: {'subtask': '2-1', 'question': <the item's question>}")
    return re.sub(r"\n|\t", "", line)


def _score_2_1(preds, refs, ctxs):
    totals = [0, 0, 0]
    per, details = [], []
    for pred, ref, ctx in zip(preds, refs, ctxs):
        source = _no_ws(_source_sentence(ctx))
        if not source:
            raise _BadRef("the source sentence (from the context's question) is empty")
        out = re.sub(r"\n|\t", "", pred)
        if len(out) - len(ref) > 5:
            out = out[:len(ref) + 5]
        if len(out) == 0:
            out = "无内容"
        out = _no_ws(out) or "无"  # an all-whitespace output fails LawBench's lookup and becomes "无"
        gold = _no_ws(re.sub(r"\n|\t", "", ref)) or "无"
        hyp_edits, hyp_to = m2_edits(source, out)
        ref_edits, ref_to = m2_edits(source, gold)
        tp, fp, fn = _compare(_edit_dict(hyp_edits), _edit_dict(ref_edits))
        totals[0] += tp
        totals[1] += fp
        totals[2] += fn
        per.append(f_beta(tp, fp, fn))
        details.append({"extracted": [list(e) for e in hyp_edits[:50]], "gold": [list(e) for e in ref_edits[:50]],
                        "tp": tp, "fp": fp, "fn": fn, "timed_out": hyp_to or ref_to})
    return round(f_beta(*totals), 4), per, details


# --------------------------------------------------------------------------------------------------
# sub-task dispatch


def _mean_task(item):
    def run(preds, refs, ctxs):
        per, details, scored = [], [], []
        for pred, ref, ctx in zip(preds, refs, ctxs):
            s, det = item(pred, ref, ctx)
            if s is None:
                per.append(1.0)
            else:
                scored.append(s)
                per.append(min(1.0, max(0.0, s)))
            details.append(det)
        return (sum(scored) / len(scored) if scored else None), per, details
    return run


def _score_prison(preds, refs, ctxs):
    dists, per, details = [], [], []
    for pred, ref, ctx in zip(preds, refs, ctxs):
        d, det = _item_3_4(pred, ref, ctx)
        if d is None:
            per.append(1.0)
        else:
            dists.append(d)
            per.append(max(0.0, (_LOG216 - d) / _LOG216))
        details.append(det)
    if not dists:
        return None, per, details
    return max(0.0, (_LOG216 - sum(dists) / len(dists)) / _LOG216), per, details


_SCORERS = {
    "1-1": _mean_task(_rouge_item("答案:")),
    "1-2": _mean_task(_choice_item("正确答案：", 5, "ABCD")),
    "2-1": _score_2_1,
    "2-2": _mean_task(_item_2_2),
    "2-3": _mean_task(_set_item(MARITAL_LABELS, _gold_2_3)),
    "2-4": _mean_task(_item_2_4),
    "2-5": _mean_task(_item_2_5),
    "2-6": _mean_task(_item_2_6),
    "2-7": _mean_task(_rouge_item()),
    "2-8": _mean_task(_choice_item("[正确答案]", 6, "ABCDE")),
    "2-9": _mean_task(_set_item(EVENT_TYPES, lambda ref: set(ref.split(";")))),
    "2-10": _mean_task(_item_2_10),
    "3-1": _mean_task(_item_3_1),
    "3-2": _mean_task(_rouge_item()),
    "3-3": _mean_task(_set_item(CHARGES, _gold_3_3)),
    "3-4": _score_prison,
    "3-5": _score_prison,
    "3-6": _mean_task(_choice_item("正确答案:", 5, "ABCD")),
    "3-7": _mean_task(_item_3_7),
    "3-8": _mean_task(_rouge_item()),
}


def _context(ctx: Any) -> dict:
    if isinstance(ctx, str):
        text = ctx.strip()
        if text.startswith("{"):
            ctx = json.loads(text)
        else:
            return {"subtask": text}
    if not isinstance(ctx, dict) or "subtask" not in ctx:
        raise ValueError(f"lawbench: each context must be a dict with a 'subtask' id, got {ctx!r:.200}")
    sid = str(ctx["subtask"]).strip()
    if sid not in SUBTASKS:
        raise ValueError(f"lawbench: unknown sub-task {sid!r}; known: {', '.join(SUBTASKS)}")
    return {**ctx, "subtask": sid}


def score_subtasks(preds: Sequence[str], refs: Sequence[str], contexts: Sequence[Any]) -> tuple[dict, Scored]:
    """({sub-task id: its LawBench score}, the overall Scored) -- `compute` without the metric plumbing."""
    if not (len(preds) == len(refs) == len(contexts)):
        raise ValueError(f"lawbench: {len(preds)} predictions, {len(refs)} references, {len(contexts)} contexts")
    ctxs = [_context(c) for c in contexts]
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(ctxs):
        groups.setdefault(c["subtask"], []).append(i)
    per: list[float] = [0.0] * len(ctxs)
    details: list[dict] = [{} for _ in ctxs]
    scores: dict[str, float] = {}
    for sid, idx in groups.items():
        try:
            s, sub_per, sub_det = _SCORERS[sid]([str(preds[i]) for i in idx], [str(refs[i]) for i in idx],
                                                [ctxs[i] for i in idx])
        except _BadRef as e:
            raise ValueError(f"lawbench sub-task {sid} ({SUBTASKS[sid]['name']}): malformed reference: {e}") from e
        if s is not None:
            scores[sid] = min(1.0, max(0.0, float(s)))
        for i, p, d in zip(idx, sub_per, sub_det):
            per[i] = float(p)
            details[i] = {"subtask": sid, **d}
    overall = sum(scores.values()) / len(scores) if scores else 0.0
    return scores, Scored(overall, per, details)


def compute(preds, refs, labels, options, judge, contexts) -> Scored:
    return score_subtasks(preds, refs, contexts)[1]


LAWBENCH = Metric("lawbench", compute, best=1.0, context=True)
