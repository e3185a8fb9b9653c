"""The ten FT-Bench tasks: a spec each (what the Researcher reads, how rows are rendered, how they are
scored) and a loader that turns the original release into train/val/test rows.

A row is {"input": prompt text, "output": training target / reference, "context": what grading needs}.
Loaders read the original files from a local copy (`FTBENCH_DATA` or `--data-dir`, laid out as
`<root>/<task id>/...` in the release's own layout) and, for tasks whose Hub copy has a known layout,
from the Hugging Face Hub when there is no local copy. The split policy of each task is in its spec
(`split_policy`); wherever a task ships no train split, train/val are carved from the non-test data with
a fixed seed. The test split is only ever read by the final evaluation; the Researcher never sees it.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

Row = dict[str, Any]
SEED = 20260423  # fixed: every carved split is the same on every machine


class DataNotAvailable(Exception):
    """The task's data is neither in the local data directory nor reachable on the Hub."""


@dataclass(frozen=True)
class TaskSpec:
    id: str
    title: str
    metric: str                         # a trex_ray metric (ftbench's own are registered as plugins)
    metric_label: str                   # the benchmark's name for it (the results table)
    goal: str                           # what the Researcher reads
    fields: str                         # the original release's fields, in words
    prompt: str                         # how a row's input is rendered (placeholders are the release's fields)
    split_policy: str
    source: str                         # where the original release lives
    metric_note: str                    # the original metric and any deviation from it
    local_files: tuple[str, ...]        # paths under <root>/<id>/ that must exist for a local load
    metric_options: dict = field(default_factory=dict)
    labels: tuple[str, ...] | None = None
    hf_id: str | None = None            # its Hub copy, read when there is no local copy (HUB_TASKS)
    license_note: str = ""
    # the lite profile: at most this many rows per split (train, val, test) and input+output characters
    lite: tuple[int, int, int] = (256, 48, 200)
    lite_max_chars: int | None = 1200


@dataclass
class Splits:
    train: list[Row]
    val: list[Row]
    test: list[Row]
    source: str  # "local:<dir>" or "hf:<id>"
    notes: list[str] = field(default_factory=list)


def data_root(data_dir: str | None = None) -> str:
    """`--data-dir`, else $FTBENCH_DATA, else ../shared/ftbench_data beside the working directory or, failing
    that, beside the trex-ray checkout."""
    if data_dir or os.environ.get("FTBENCH_DATA"):
        return os.path.abspath(data_dir or os.environ["FTBENCH_DATA"])
    here = os.path.abspath(os.path.join("..", "shared", "ftbench_data"))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    beside = os.path.join(os.path.dirname(repo), "shared", "ftbench_data")
    return here if os.path.isdir(here) or not os.path.isdir(beside) else beside


def _carve(rows: list[Row], n_val: int, n_test: int = 0, seed: str = "") -> tuple[list, list, list]:
    """(train, val, test) by a seeded shuffle: about n_test rows to test, n_val to val, the rest to train.
    Rows with the same input stay together (releases repeat some items), so no test input is trained on."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r["input"], []).append(r)
    keys = list(groups)
    random.Random(f"{SEED}:{seed}").shuffle(keys)
    train: list[Row] = []
    val: list[Row] = []
    test: list[Row] = []
    for k in keys:
        (test if len(test) < n_test else val if len(val) < n_val else train).extend(groups[k])
    return train, val, test


def _read_csv(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _options(item: dict, letters: str) -> str:
    """The options as lines "A. ...", each ending in a newline (empty when there are none)."""
    return "".join(f"{c}. {str(item[c]).strip()}\n" for c in letters if str(item.get(c, "")).strip())


# --------------------------------------------------------------------------------------------------
# sst2

SST2_LABELS = ("negative", "positive")


def _sst2_row(sentence: str, label: int | str) -> Row:
    return {"input": SPECS["sst2"].prompt.format(sentence=sentence.strip()), "output": SST2_LABELS[int(label)],
            "context": None}


def load_sst2(root: str) -> Splits:
    base = os.path.join(root, "sst2")
    if os.path.isfile(os.path.join(base, "train.tsv")):
        def tsv(name):
            with open(os.path.join(base, name), encoding="utf-8") as f:
                next(f)  # header (text<TAB>label in this copy; GLUE calls it sentence<TAB>label)
                return [_sst2_row(*line.rstrip("\n").split("\t")) for line in f if line.strip()]
        train, val, _ = _carve(tsv("train.tsv"), n_val=872, seed="sst2")
        return Splits(train, val, tsv("dev.tsv"), f"local:{base}")
    ds = _hub("sst2")
    train, val, _ = _carve([_sst2_row(r["sentence"], r["label"]) for r in ds["train"]], n_val=872, seed="sst2")
    return Splits(train, val, [_sst2_row(r["sentence"], r["label"]) for r in ds["validation"]], f"hf:{SPECS['sst2'].hf_id}")


# --------------------------------------------------------------------------------------------------
# hoc

HOC_LABELS = (
    "activating invasion and metastasis", "avoiding immune destruction", "cellular energetics",
    "enabling replicative immortality", "evading growth suppressors", "genomic instability and mutation",
    "inducing angiogenesis", "resisting cell death", "sustaining proliferative signaling",
    "tumor promoting inflammation",
)


def load_hoc(root: str) -> Splits:
    """Sentence rows grouped into abstracts (BLURB evaluates HoC per abstract): an abstract's labels are the
    union of its sentences' labels, its text their concatenation in order."""
    base = os.path.join(root, "hoc", "data", "HoC")

    def split(name):
        docs: dict[str, list] = defaultdict(list)
        with open(os.path.join(base, f"{name}.tsv"), encoding="utf-8") as f:
            next(f)
            for line in f:
                if not line.strip():
                    continue
                labels, sentence, index = line.rstrip("\n").split("\t")
                pmid, _, num = index.partition("_s")
                on = {int(k) for k, v in (item.split("_") for item in labels.split(",")) if v == "1"}
                docs[pmid].append((int(num), sentence.strip(), on))
        rows = []
        for pmid, sents in docs.items():
            sents.sort()
            on = sorted(set().union(*(s[2] for s in sents)))
            rows.append({"input": SPECS["hoc"].prompt.format(abstract=" ".join(s[1] for s in sents)),
                         "output": "; ".join(HOC_LABELS[i] for i in on) or "none", "context": {"pmid": pmid}})
        return rows

    return Splits(split("train"), split("dev"), split("test"), f"local:{base}")


# --------------------------------------------------------------------------------------------------
# lawbench

LAWBENCH_IDS = tuple(f"1-{i}" for i in (1, 2)) + tuple(f"2-{i}" for i in range(1, 11)) + tuple(f"3-{i}" for i in range(1, 9))


def load_lawbench(root: str) -> Splits:
    """Per sub-task, a seeded carve of its 500 items: 150 test, 50 val, 300 train."""
    base = os.path.join(root, "lawbench", "data", "zero_shot")
    train, val, test = [], [], []
    for sid in LAWBENCH_IDS:
        items = _read_json(os.path.join(base, f"{sid}.json"))
        rows = [{"input": SPECS["lawbench"].prompt.format(instruction=it["instruction"].strip(), question=it["question"].strip()),
                 "output": it["answer"].strip(), "context": {"subtask": sid, **({"question": it["question"]} if sid == "2-1" else {})}}
                for it in items]
        tr, va, te = _carve(rows, n_val=50, n_test=150, seed=f"lawbench:{sid}")
        train += [r for r in tr if r["output"]]  # an empty answer (2-6: no entity) is graded, not trained on
        val += va
        test += te
    return Splits(train, val, test, f"local:{base}")


# --------------------------------------------------------------------------------------------------
# aci_bench

def load_aci_bench(root: str) -> Splits:
    base = os.path.join(root, "aci_bench", "data", "challenge_data")

    def split(*names):
        return [{"input": SPECS["aci_bench"].prompt.format(dialogue=r["dialogue"].strip()), "output": r["note"].strip(),
                 "context": {"encounter_id": r["encounter_id"], "file": n}}
                for n in names for r in _read_csv(os.path.join(base, f"{n}.csv"))]

    return Splits(split("train"), split("valid"),
                  split("clinicalnlp_taskB_test1", "clinicalnlp_taskC_test2", "clef_taskC_test3"), f"local:{base}")


# --------------------------------------------------------------------------------------------------
# tomg_bench

TOMG_SUBTASKS = ("MolCustom/AtomNum", "MolCustom/BondNum", "MolCustom/FunctionalGroup", "MolEdit/AddComponent",
                 "MolEdit/DelComponent", "MolEdit/SubComponent", "MolOpt/LogP", "MolOpt/MR", "MolOpt/QED")


def load_tomg_bench(root: str) -> Splits:
    """Train: OpenMolIns-light (instruction -> molecule). Val: 20 seeded items per sub-task held out of its
    5,000 test items (so val is graded exactly like test); test: the other 4,980 per sub-task."""
    base = os.path.join(root, "tomg_bench", "data")
    by_short = {s.split("/")[1]: s for s in TOMG_SUBTASKS}
    train = [{"input": SPECS["tomg_bench"].prompt.format(instruction=r["Instruction"].strip()),
              "output": r["molecule"].strip(), "context": {"subtask": by_short[r["SubTask"]], "Instruction": r["Instruction"]}}  # constraints: from the text
             for r in _read_csv(os.path.join(base, "OpenMolIns", "light", "train.csv"))]
    seen = {r["input"] for r in train}
    val, test = [], []
    for sub in TOMG_SUBTASKS:
        rows = [{"input": SPECS["tomg_bench"].prompt.format(instruction=r["Instruction"].strip()), "output": "",
                 "context": {"subtask": sub, **r}}
                for r in _read_csv(os.path.join(base, "benchmarks", "open_generation", sub, "test.csv"))]
        rows = [r for r in rows if r["input"] not in seen]  # a few test instructions are also training items
        _, va, te = _carve(rows, n_val=20, n_test=len(rows) - 20, seed=f"tomg:{sub}")
        val += va
        test += te
    return Splits(train, val, test, f"local:{base}")


# --------------------------------------------------------------------------------------------------
# cs_bench

def _csbench_row(item: dict) -> Row | None:
    fmt = item["Format"]
    if fmt == "Multiple-choice":
        return {"input": SPECS["cs_bench"].prompt.format(question=item["Question"].strip(), options=_options(item, "ABCD"),
                                                         instruction="Answer with the letter of the correct option."),
                "output": str(item["Answer"]).strip(), "context": {"kind": "choice", "letters": "ABCD", "style": "csbench",
                                                              "domain": item["Domain"], "id": item["ID"]}}
    if fmt == "Assertion":
        return {"input": SPECS["cs_bench"].prompt.format(question=item["Question"].strip(), options="",
                                                         instruction="Answer True or False."),
                "output": str(item["Answer"]).strip(), "context": {"kind": "assertion", "domain": item["Domain"], "id": item["ID"]}}
    return None  # fill-in-the-blank and open-ended items are graded by a GPT-4 judge upstream: left out


def load_cs_bench(root: str) -> Splits:
    base = os.path.join(root, "cs_bench", "Dataset", "CSBench-EN")
    nontest = [r for r in map(_csbench_row, _read_json(os.path.join(base, "valid.json"))) if r]
    test = [r for r in map(_csbench_row, _read_json(os.path.join(base, "test.json"))) if r]
    train, val, _ = _carve(nontest, n_val=50, seed="cs_bench")
    return Splits(train, val, test, f"local:{base}")


# --------------------------------------------------------------------------------------------------
# econlogicqa

def _econ_row(item: dict) -> Row:
    return {"input": SPECS["econlogicqa"].prompt.format(question=str(item["Question"]).strip(), options=_options(item, "ABCD")),
            "output": ", ".join(re.findall(r"[A-D]", str(item["Answer"]))), "context": {"kind": "order"}}


def load_econlogicqa(root: str) -> Splits:
    base = os.path.join(root, "econlogicqa")
    if os.path.isfile(os.path.join(base, "train.csv")):  # the full release (train/val/test files)
        return Splits(*(list(map(_econ_row, _read_csv(os.path.join(base, f"{s}.csv")))) for s in ("train", "val", "test")),
                      f"local:{base}")
    if hub_reachable():  # the official train/val/test
        try:
            ds = _hub("econlogicqa")
            val_split = "validation" if "validation" in ds else "val"
            return Splits(*(list(map(_econ_row, ds[s])) for s in ("train", val_split, "test")),
                          f"hf:{SPECS['econlogicqa'].hf_id}")
        except DataNotAvailable:
            if not os.path.isfile(os.path.join(base, "test.csv")):
                raise
    if os.path.isfile(os.path.join(base, "test.csv")):
        train, val, test = _carve(list(map(_econ_row, _read_csv(os.path.join(base, "test.csv")))), n_val=20, n_test=40,
                                  seed="econlogicqa")
        return Splits(train, val, test, f"local:{base}", notes=[
            "only the 130-item test split is in the local copy: train 70 / val 20 / test 40 carved from it (seeded); "
            "scores are not comparable with the official 130-item test"])
    raise DataNotAvailable("econlogicqa: no local copy and the Hub is not reachable")


# --------------------------------------------------------------------------------------------------
# omebench

def load_omebench(root: str) -> Splits:
    """Test: the expert-verified Gold set. Train/val: the Template set (seeded 30 to val); the Silver
    training set of the release is not in the local copy."""
    from ftbench.metrics.molecules import format_mechanism

    base = os.path.join(root, "omebench", "data")

    keep = ("step", "type", "subtype", "intermediate_smiles", "step_weight")

    def row(r):
        return {"input": SPECS["omebench"].prompt.format(reactants=" . ".join(r["reactants_smiles"]),
                                                         products=" . ".join(r["products_smiles"]),
                                                         conditions=r.get("conditions") or "none"),
                "output": format_mechanism(r["mechanism"]),
                "context": {"reaction_id": r["reaction_id"],  # what the metric reads (no rationales)
                            "mechanism": [{k: st[k] for k in keep if k in st} for st in r["mechanism"]]}}

    train, val, _ = _carve([row(r) for r in _read_json(os.path.join(base, "oMe_Template.json"))], n_val=30, seed="omebench")
    return Splits(train, val, [row(r) for r in _read_json(os.path.join(base, "oMe_Gold.json"))], f"local:{base}",
                  notes=["oMe_Silver.jsonl (the release's large training set) is not in the local copy: train on the "
                         "Template set"])


# --------------------------------------------------------------------------------------------------
# openfindata

OPENFINDATA_FILES = {  # file -> option letters (None: keyword task)
    "emotion_identification": "ABC", "entity_disambiguation": "ABC", "financial_facts": "ABC",
    "data_inspection": "ABCD", "financial_terminology": "ABCD", "metric_calculation": "ABCD", "value_extraction": "ABCD",
    "intent_understanding": "ABCDE", "entity_recognition": None,
}


def load_openfindata(root: str) -> Splits:
    """Per scored file of the release, a seeded carve: 30% test, 10% val, the rest train."""
    base = os.path.join(root, "openfindata", "openfindata_release")
    train, val, test = [], [], []
    for name, letters in OPENFINDATA_FILES.items():
        path = os.path.join(base, f"{name}.json")
        if not os.path.isfile(path):
            raise DataNotAvailable(f"openfindata: {path} is missing (the release has 9 scored files)")
        rows = []
        for it in _read_json(path):
            if letters:
                inp = SPECS["openfindata"].prompt.format(question=str(it["question"]).strip(), options=_options(it, letters),
                                                         instruction="请直接给出正确选项的字母。")
                ctx = {"kind": "choice", "letters": letters, "style": "opencompass", "file": name}
            else:
                inp = SPECS["openfindata"].prompt.format(question=str(it["question"]).strip(), options="",
                                                         instruction="请列出所有实体，用“、”分隔。")
                ctx = {"kind": "keywords", "file": name}
            ans = it["answer"]
            rows.append({"input": inp, "output": "、".join(ans) if isinstance(ans, list) else str(ans).strip(), "context": ctx})
        n_test, n_val = round(0.3 * len(rows)), max(1, round(0.1 * len(rows)))
        tr, va, te = _carve(rows, n_val=n_val, n_test=n_test, seed=f"openfindata:{name}")
        train += tr
        val += va
        test += te
    return Splits(train, val, test, f"local:{base}")


# --------------------------------------------------------------------------------------------------
# gta

def _gta_row(qid: str, item: dict) -> Row | None:
    """The step-by-step setting with the reference tool chain: the model sees the query, the tools called
    and what they returned, and writes the final answer (graded by GTA's whitelist/blacklist matching).
    Queries without a gold answer (image outputs) are left out, as in GTA's answer accuracy."""
    gt = item.get("gt_answer")
    if not gt or not isinstance(gt, dict) or not gt.get("whitelist"):
        return None
    dialogs = item.get("dialogs") or []
    query = next((d["content"] for d in dialogs if d.get("role") == "user"), "")
    steps = []
    for d in dialogs:
        if d.get("role") == "assistant" and d.get("tool_calls"):
            for c in d["tool_calls"]:
                fn = c.get("function", c)
                steps.append(f"call {fn.get('name')}({json.dumps(fn.get('arguments'), ensure_ascii=False)})")
        elif d.get("role") == "tool":
            steps.append(f"result: {json.dumps(d.get('content'), ensure_ascii=False)}")
    final = next((d.get("content") for d in reversed(dialogs) if d.get("role") == "assistant" and d.get("content")), None)
    target = final if isinstance(final, str) and final.strip() else "; ".join(g[0] for g in gt["whitelist"] if g)
    files = ", ".join(f.get("path", "") for f in item.get("files") or [])
    return {"input": SPECS["gta"].prompt.format(query=query, files=files or "none", steps="\n".join(steps) or "none"),
            "output": target.strip(), "context": {"kind": "whitelist", "whitelist": gt["whitelist"],
                                                  "blacklist": gt.get("blacklist"), "id": qid}}


def load_gta(root: str) -> Splits:
    path = os.path.join(root, "gta", "gta_dataset", "dataset.json")
    data = _read_json(path)
    rows = [r for r in (_gta_row(k, v) for k, v in data.items()) if r]
    n_test, n_val = round(0.4 * len(rows)), max(1, round(0.1 * len(rows)))
    train, val, test = _carve(rows, n_val=n_val, n_test=n_test, seed="gta")
    return Splits(train, val, test, f"local:{os.path.dirname(path)}")


# --------------------------------------------------------------------------------------------------
# the Hub

HUB_TASKS = ("sst2", "econlogicqa")  # tasks whose Hub copy's layout the loaders know

# TREX's reported test score per task (arXiv 2604.14116: Qwen3-1.7B, the full splits, up to 20 rounds), in
# each task's own metric as a percentage; shown beside ours in `ftbench table`, never compared as equals
PAPER_TREX = {"aci_bench": 50.2, "tomg_bench": 68.1, "omebench": 48.4, "hoc": 89.7, "sst2": 97.2, "cs_bench": 58.1,
              "openfindata": 69.9, "econlogicqa": 45.4, "gta": 65.2, "lawbench": 42.1}


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether huggingface.co answers at all (checked once per process, so offline loads stay fast)."""
    global _HUB_REACHABLE
    if _HUB_REACHABLE is None:
        import socket

        if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
            _HUB_REACHABLE = False
        else:
            try:
                socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
                _HUB_REACHABLE = True
            except OSError:
                _HUB_REACHABLE = False
    return _HUB_REACHABLE


_HUB_REACHABLE: bool | None = None


def _hub(task: str):
    """The task's dataset from the Hugging Face Hub, or DataNotAvailable when the Hub cannot be reached."""
    spec = SPECS[task]
    if not hub_reachable():
        raise DataNotAvailable(f"{task}: no local copy, and the Hugging Face Hub is not reachable for {spec.hf_id}")
    try:
        import datasets

        return datasets.load_dataset(spec.hf_id)
    except Exception as e:  # noqa: BLE001 - offline, unknown id, gated: all mean "not here"
        raise DataNotAvailable(f"{task}: no local copy, and the Hub copy {spec.hf_id} could not be loaded "
                               f"({type(e).__name__}: {str(e)[:200]})") from None


# --------------------------------------------------------------------------------------------------
# the specs

SPECS: dict[str, TaskSpec] = {s.id: s for s in [
    TaskSpec(
        id="sst2", title="SST-2 sentiment", metric="accuracy", metric_label="accuracy", labels=SST2_LABELS,
        goal="Classify the sentiment of a movie-review sentence as positive or negative; answer with the single word.",
        fields="sentence (lower-cased, tokenised), label (0 negative, 1 positive)",
        prompt="Is the sentiment of this movie review sentence positive or negative?\nSentence: {sentence}\nAnswer:",
        split_policy="train: GLUE train minus a seeded 872 for val; test: GLUE dev (872; GLUE test has no labels).",
        source="GLUE SST-2 (Socher et al. 2013); Hub: stanfordnlp/sst2", hf_id="stanfordnlp/sst2",
        metric_note="GLUE accuracy. The label is the first of positive/negative named in the answer.",
        local_files=("train.tsv", "dev.tsv"), lite=(256, 64, 200), lite_max_chars=400),
    TaskSpec(
        id="hoc", title="Hallmarks of Cancer, multi-label", metric="multilabel_f1", metric_label="macro-F1", metric_options={"average": "macro"},
        labels=HOC_LABELS,
        goal="Read a biomedical abstract and name every hallmark of cancer it discusses, from the 10 hallmarks; "
             "answer 'none' if it discusses none. Separate hallmarks with '; '.",
        fields="labels (10 binary hallmark flags per sentence), sentence, index (<PMID>_s<n>)",
        prompt="Which hallmarks of cancer does this abstract discuss? Choose from: " + "; ".join(HOC_LABELS)
               + ". Answer 'none' if none.\nAbstract: {abstract}\nHallmarks:",
        split_policy="As released (the BLURB document split), sentences grouped into abstracts: train 1,295 / "
                     "dev 186 as val / test 371 abstracts.",
        source="HoC (Baker et al. 2016), BLURB split (Hub copies such as bigbio/hallmarks_of_cancer use other splits)",
        metric_note="Macro-F1 over the 10 hallmarks at the abstract level (abstract labels = the union of its "
                    "sentences'), as FT-Bench reports it. BLURB instead averages a per-abstract F1 (its sentence "
                    "classifier's predictions unioned per abstract); here the model reads the whole abstract and "
                    "answers once. The per-abstract F1 is each example's score in the bad cases.",
        local_files=("data/HoC/train.tsv", "data/HoC/dev.tsv", "data/HoC/test.tsv"), lite=(256, 48, 120),
        lite_max_chars=None),
    TaskSpec(
        id="lawbench", title="LawBench (20 legal sub-tasks)", metric="lawbench", metric_label="hybrid score",
        goal="Answer Chinese legal tasks (20 sub-tasks: article recitation, legal QA, proofreading, NER, charge and "
             "prison-term prediction, case analysis, consultation, ...) in the format each instruction asks for.",
        fields="instruction, question, answer (Chinese text; 20 files of 500 items, one per sub-task)",
        prompt="{instruction}\n{question}",
        split_policy="No train split upstream (evaluation-only): per sub-task a seeded carve of its 500 items into "
                     "about train 300 / val 50 / test 150 (repeated items kept in one split; items with an empty "
                     "answer are not trained on).",
        source="open-compass/LawBench (zero-shot files)", license_note="Apache-2.0; per-sub-task source licenses apply",
        metric_note="LawBench's per-sub-task metrics (accuracy, F1, soft-F1, rc-F1, F0.5, ROUGE-L, log-distance), "
                    "averaged over sub-tasks (the overall score). See ftbench/metrics/lawbench.py for deviations.",
        local_files=("data/zero_shot/1-1.json",), lite=(400, 60, 200), lite_max_chars=600),
    TaskSpec(
        id="aci_bench", title="Clinical note generation from dialogue", metric="rouge1", metric_label="ROUGE-1",
        goal="Write the full clinical visit note (subjective, exam, results, assessment and plan) from a "
             "doctor-patient conversation.",
        fields="dataset, encounter_id, dialogue ([doctor]/[patient] turns), note (reference note)",
        prompt="Write the clinical note for this doctor-patient conversation.\n\n{dialogue}\n\nClinical note:",
        split_policy="As released: train 67 / valid 20 (val) / test1+test2+test3 (120) as test.",
        source="wyim/aci-bench (challenge_data)", license_note="CC BY 4.0",
        metric_note="ROUGE-1 F (rouge-score, stemmed) on the full note; the paper also reports ROUGE-2/L, BERTScore, "
                    "MEDCON, not computed here.",
        local_files=("data/challenge_data/train.csv",), lite=(67, 10, 20), lite_max_chars=None),
    TaskSpec(
        id="tomg_bench", title="Text-based open molecule generation", metric="tomg_bench", metric_label="success rate (Acc)",
        goal="Generate a molecule (SMILES) that satisfies a text instruction: custom atom/bond/functional-group "
             "counts, add/delete/substitute a group in a given molecule, or change its LogP/MR/QED in a direction. "
             "Answer with the SMILES only.",
        fields="test: Instruction + the constraints (counts, molecule, groups, property); train: SubTask, Instruction, molecule",
        prompt="{instruction}\nAnswer with the SMILES only.\nMolecule:",
        split_policy="train: OpenMolIns-light (4,500); val: 20 seeded items per sub-task held out of the test files; "
                     "test: the rest (4,980 per sub-task, less the 5 whose instruction is also a training item).",
        source="phenixace/TOMG-Bench (data as released, via tmlr-group/RePO, LFS hashes checked)",
        metric_note="Success rate per sub-task checked with RDKit, averaged over the 9 sub-tasks (Acc). See "
                    "ftbench/metrics/molecules.py.",
        local_files=("data/OpenMolIns/light/train.csv",), lite=(450, 45, 180), lite_max_chars=600),
    TaskSpec(
        id="cs_bench", title="Computer-science knowledge QA", metric="ftbench_qa", metric_label="accuracy",
        goal="Answer computer-science questions (data structures, organisation, networks, operating systems): "
             "multiple-choice with the option letter, assertions with True or False.",
        fields="ID, Domain, SubDomain, Format, Tag, Question, A-D, Answer (EN release)",
        prompt="{question}\n{options}{instruction}\nAnswer:",
        split_policy="No train split upstream: train/val are a seeded carve of the EN valid set (train 144 / val 50); "
                     "test: EN test. Multiple-choice and assertion items only.",
        source="csbench/csbench (Dataset/CSBench-EN)", license_note="CC BY-NC 4.0",
        metric_note="Accuracy on multiple-choice and assertion items (1,778 of 2,183 test items). Fill-in-the-blank "
                    "and open-ended items are GPT-4-judged upstream and are left out.",
        local_files=("Dataset/CSBench-EN/valid.json", "Dataset/CSBench-EN/test.json"), lite=(144, 50, 200)),
    TaskSpec(
        id="econlogicqa", title="Ordering economic events", metric="ftbench_qa", metric_label="accuracy",
        goal="Put four economic events in the logical order they would happen; answer with the four letters in "
             "order, e.g. 'B, A, D, C'.",
        fields="Question, A, B, C, D (events), Answer (letter sequence)",
        prompt="{question}\n{options}Answer with the four letters in order, e.g. A, B, C, D.\nAnswer:",
        split_policy="Official train 390 / val 130 / test 130 when available (Hub); the local copy has only test: "
                     "a seeded carve train 70 / val 20 / test 40.",
        source="EconLogicQA (Quan & Liu 2024); Hub: yinzhu-quan/econ_logic_qa", hf_id="yinzhu-quan/econ_logic_qa",
        license_note="CC BY-NC-SA 4.0",
        metric_note="Accuracy: the whole predicted order must equal the gold order.",
        local_files=("test.csv",), lite=(70, 20, 40)),
    TaskSpec(
        id="omebench", title="Organic reaction mechanisms", metric="omebench", metric_label="oMeScore",
        goal="Given reactants, products and conditions, write the reaction mechanism step by step: each step's "
             "type, subtype and its intermediate as SMILES, one step per line.",
        fields="reaction_id, level, name, reactants_smiles, products_smiles, conditions, mechanism[step, type, "
               "subtype, intermediate_smiles, step_weight]",
        prompt="Reactants: {reactants}\nProducts: {products}\nConditions: {conditions}\n"
               "Write the mechanism, one step per line as '<n>. <type> (<subtype>): <intermediate SMILES>'.\nMechanism:",
        split_policy="test: oMe_Gold (196 reactions); train/val: oMe_Template (167) with a seeded 30 to val "
                     "(the release's Silver training set is not in the local copy). Template reactions are "
                     "generalised named reactions (R-groups as placeholders): most share their named reaction "
                     "with a Gold item, as the release intends, but no Gold input appears in training.",
        source="skylarkie/oMeBench", license_note="MIT",
        metric_note="oMeScore from step alignment (see ftbench/metrics/molecules.py for the exact definition "
                    "and deviations).",
        local_files=("data/oMe_Gold.json", "data/oMe_Template.json"), lite=(137, 30, 60), lite_max_chars=None),
    TaskSpec(
        id="openfindata", title="Chinese financial QA", metric="ftbench_qa", metric_label="accuracy",
        goal="Answer Chinese financial questions: multiple-choice with the option letter; entity recognition "
             "with the entities separated by '、'.",
        fields="per file: question, A-C/D/E, answer (choice files) or question, answer (entity_recognition)",
        prompt="{question}\n{options}{instruction}\n答案：",
        split_policy="No split upstream: per scored file a seeded carve 60% train / 10% val / 30% test.",
        source="open-compass/OpenFinData (release asset openfindata_release.zip)",
        license_note="Apache-2.0; upstream asks that the data be used for academic research and not to train models",
        metric_note="Accuracy (OpenCompass rules: the answer letter; entity recognition: every gold entity appears).",
        local_files=("openfindata_release/emotion_identification.json",), lite=(256, 48, 200)),
    TaskSpec(
        id="gta", title="General tool agents", metric="ftbench_qa", metric_label="answer accuracy",
        goal="Given a user query, the tools that were called and what they returned, write the final answer.",
        fields="dataset.json: {id: {tools, files, dialogs (user/assistant tool calls/tool results), gt_answer "
               "{whitelist, blacklist}}}",
        prompt="Query: {query}\nFiles: {files}\nTool calls so far:\n{steps}\nFinal answer:",
        split_policy="No split upstream (229 queries): the queries with a text gold answer, seeded carve 50% train / "
                     "10% val / 40% test.",
        source="open-compass/GTA (release asset gta_dataset.zip); Hub: Jize1/GTA", license_note="Apache-2.0",
        metric_note="Answer accuracy with GTA's whitelist/blacklist matching, in the step-by-step setting with the "
                    "reference tool chain (no live tools are run).",
        local_files=("gta_dataset/dataset.json",), lite=(128, 24, 96)),
]}

LOADERS: dict[str, Callable[[str], Splits]] = {
    "sst2": load_sst2, "hoc": load_hoc, "lawbench": load_lawbench, "aci_bench": load_aci_bench,
    "tomg_bench": load_tomg_bench, "cs_bench": load_cs_bench, "econlogicqa": load_econlogicqa,
    "omebench": load_omebench, "openfindata": load_openfindata, "gta": load_gta,
}


def get_spec(task: str) -> TaskSpec:
    if task not in SPECS:
        from trex_ray.errors import ConfigError

        raise ConfigError("task", f"unknown FT-Bench task {task!r}", f"use one of: {', '.join(SPECS)}")
    return SPECS[task]


def available(task: str, data_dir: str | None = None) -> bool:
    """Whether the task's local copy is there (the Hub is not tried)."""
    base = os.path.join(data_root(data_dir), get_spec(task).id)
    return all(os.path.isfile(os.path.join(base, p)) for p in get_spec(task).local_files)


def load(task: str, data_dir: str | None = None) -> Splits:
    """The task's splits, from the local copy when complete, else the Hub where the layout is known."""
    spec = get_spec(task)
    root = data_root(data_dir)
    if available(task, data_dir) or task in HUB_TASKS:
        return LOADERS[task](root)  # a Hub task's loader falls through to the Hub without a full local copy
    raise DataNotAvailable(f"{task}: data not available: no local copy under {os.path.join(root, task)} "
                           f"(expected {', '.join(spec.local_files)}; source: {spec.source}); set --data-dir or "
                           "FTBENCH_DATA to the folder that holds it")
