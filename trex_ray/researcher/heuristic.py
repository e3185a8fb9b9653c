"""The offline researcher: no network, no LLM, but it works like one.

- analyze: reads the data profile (sizes, lengths, label balance, duplicates) and the baseline's bad
  cases; writes a brief with risks and starting settings sized to the data.
- propose: a coarse direction first, chosen by weights that the parent's result moves (`DIRECTIONS`,
  one table: each direction's prior, what raises it, what a failure makes of it, what it changes and
  why; read by both the weighting and the plan-making) (under-fitting,
  a loss still high or still falling when training stopped -> more epochs / higher lr / more capacity;
  format errors -> prompt format; regression -> lower lr, cleaner data; improvement -> warm start and
  keep going, at the parent's pace while it was still learning), then the concrete plan: the
  parent's plan with that direction applied. A plan whose signature is already in the tree is skipped.
- diagnose: sorts bad cases into empty / repetition (a generation stuck in a loop) / wrong format /
  verbose / wrong value by comparing the shape of the output with the reference (an answer graded by a
  checker with no reference, such as a molecule checked against constraints, is wrong in value), says when
  one answer was given to most val rows (a learnt prior: `collapsed` -> balance answers, lower lr), and
  compares with the parent.
- distill: mean change over the parent per direction, across the tree.

It plans with the op catalogue (`trex_ray.aidp.ops.catalogue`): cleaner data goes from MinHash and
length filters to semantic dedup; more data drops a sample, or, once a parent has memorised its data,
adds LLM-written examples (restricted to the label set on classification tasks). A small task (up to
`catalogue.SMALL_TRAIN` rows) for which data research found a related dataset tries it once, early ("add
related data": `mix` it in, up to twice the task's rows, with val and test questions decontaminated out).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable

from trex_ray.aidp.ops import catalogue
from trex_ray.memory import loss_tail_drop
from trex_ray.plan import EvalConfig, Plan, Recipe, TrainConfig
from trex_ray.prompting import task_system
from trex_ray.researcher.sizing import first_settings

TEMPLATES = [
    "{input}",
    "{goal}\n\nInput: {input}\nAnswer:",
    "Task: {goal}\nReply with the answer only.\n\n{input}",
]


def _memorised(parent: dict) -> bool:
    """The parent's training loss ended near zero: it has learnt its data by heart."""
    loss = parent.get("loss_first_last")
    return bool(loss) and loss[-1] < 0.05


def _underfitting(parent: dict) -> bool:
    """The parent had not finished learning: its in-training val was still rising when it reached its
    epoch cap; or, where val was not followed, its loss says so (see `_still_learning`)."""
    ts = parent.get("train_stats") or {}
    if ts.get("stopped"):  # val was followed: it decides
        return ts["stopped"] == "epoch cap" and ts.get("kept_step") == ts.get("steps") and len(ts.get("val_curve") or []) > 1
    loss = parent.get("loss_first_last")
    return bool(loss) and _still_learning(loss[-1], parent.get("loss_tail_drop"))


def _still_learning(last_loss: float, tail_drop: float | None) -> bool:
    """The loss ended high, or was still falling when training stopped (the last quarter of the curve at
    least 10% below the quarter before) short of memorising."""
    return last_loss > 0.3 or (tail_drop is not None and tail_drop >= 0.1 and last_loss >= 0.05)


def shape(text: str) -> str:
    """A coarse shape of a string: digits -> 9, letters -> a, runs collapsed ('15:15' -> '9:9')."""
    s = re.sub(r"\d+", "9", text.strip())
    s = re.sub(r"[^\W\d_]+", "a", s)
    return re.sub(r"\s+", " ", s)


def looping(text: str) -> bool:
    """Whether a generation is stuck in a loop: one unit of 2-40 characters repeated at least three times back
    to back, covering half the text or more (a long carbon chain in a SMILES string, or a repeated word in a
    sentence, covers less)."""
    for m in re.finditer(r"(.{2,40}?)\1{2,}", text, re.S):
        if m.end() - m.start() >= len(text) / 2:
            return True
    return False


def collapsed(answers: dict | None) -> bool:
    """Whether one answer was given to most val rows, wrongly for many: at least half the rows get it and at
    least a quarter of all are wrong with it (as the metric grades them; where that count is missing, the
    rows it got beyond the references written the same). A model there has learnt the answers' prior, not
    how the input decides the answer. `answers`: `evaluate.answer_spread` of the val predictions."""
    a = answers or {}
    n = a.get("n") or 0
    if n < 8 or not a.get("top"):
        return False
    return a["top_count"] >= n / 2 and top_wrong(a) >= n / 4


def top_wrong(answers: dict) -> int:
    """Rows wrong with the most common answer (a spread without the metric's count: beyond the references
    written the same)."""
    return answers.get("top_wrong", answers["top_count"] - answers.get("top_in_refs", 0))


def form_faults(cats: dict) -> int:
    """Bad cases wrong in form rather than content: the wrong shape, too long, or a loop that does not stop."""
    return cats.get("wrong format", 0) + cats.get("verbose", 0) + cats.get("repetition", 0)


def _failure_kind(node: dict) -> str:
    kind = node.get("error_type") or str(node.get("error") or "").split(" ", 1)[0]
    return "diverged" if kind == "diverged" else "resources" if kind in ("out_of_memory", "timeout") else "any"


def signals(ctx: dict) -> dict:
    """What is known where the next plan starts, as the names `DIRECTIONS` react to: failed (the parent's
    latest finished child failed in training; with the kind: diverged or resources), broke (the direction
    of a latest child that failed otherwise), underfitting, memorised,
    still rising (the under-fitting was seen on val: its in-training val was still rising at the epoch cap),
    format, wrong value (the parent's diagnosis), collapsed (one answer to most val rows: `collapsed`),
    improved, regressed (the parent against its own)."""
    parent = ctx["parent"]
    done = [c for c in ctx.get("children") or [] if c["status"] in ("ok", "failed")]
    sig: dict = {}
    if done and done[-1]["status"] == "failed":
        kind = _failure_kind(done[-1])
        if kind != "any":  # the last try from here failed in training (diverged, out of resources): that decides
            return {"failed": kind}
        # any other failure (a recipe that left no rows, a prompt too long for the sequence limit) says
        # nothing of how training went: the change that broke is avoided here, the parent's result decides
        sig["broke"] = done[-1].get("direction")
    if parent["plan"] is None:
        return sig
    loss = parent.get("loss_first_last")
    cats = parent.get("categories") or {}
    bad = sum(cats.values()) or 1
    if _underfitting(parent):
        sig["underfitting"] = True
        if (parent.get("train_stats") or {}).get("stopped"):  # seen on val, not guessed from the loss
            sig["still rising"] = True
    elif loss and loss[-1] < 0.02:
        sig["memorised"] = True
    if form_faults(cats) / bad > 0.3:
        sig["format"] = True
    if cats.get("wrong value", 0) / bad > 0.6:
        sig["wrong value"] = True
    if collapsed(parent.get("answers")):
        sig["collapsed"] = True
    anc = ctx.get("ancestors") or []
    prev = anc[-1]["score"] if anc else None
    if prev is not None and parent["score"] is not None:
        if parent["score"] > prev:
            sig["improved"] = True
        elif parent["score"] < prev:
            sig["regressed"] = True
    return sig


def _train(update):
    """A direction that changes only the training config: `update(train)` -> changes, or None at its limit."""
    def change(agent, base: Plan, brief, parent, rng):
        upd = update(base.train)
        return None if upd is None else (base.recipe.to_yaml_list(), upd, "")
    return change


def _more_epochs(agent, base: Plan, brief, parent, rng):
    top = min(12.0, brief.get("max_epochs") or 12.0)  # the search's cost cap, when it has one
    t = base.train
    if t.epochs >= top:
        return None
    return base.recipe.to_yaml_list(), {"epochs": round(min(top, t.epochs * 1.5 + 0.5), 1)}, ""


def _more_capacity(agent, base: Plan, brief, parent, rng):
    t = base.train
    if t.lora_r >= 64:
        return None
    # every linear layer the first plan could wrap (the MLP's too: a large gain for small models), twice the rank
    every = (brief.get("start") or {}).get("target_modules") or ["gate_proj", "up_proj", "down_proj"]
    mods = sorted(set(t.target_modules) | set(every))
    return base.recipe.to_yaml_list(), {"lora_r": t.lora_r * 2, "lora_alpha": t.lora_alpha * 2, "target_modules": mods}, ""


def _cleaner_data(agent, base: Plan, brief, parent, rng):
    ops = base.recipe.to_yaml_list()
    names = [next(iter(o)) for o in ops]
    if "dedup_minhash" not in names or "length_filter" not in names:
        if "dedup_minhash" not in names:
            ops = [o for o in ops if next(iter(o)) != "dedup_exact"]
            ops.insert(1, {"dedup_minhash": {"threshold": 0.85}})
        if "length_filter" not in names:
            ops.insert(1, {"length_filter": {"min_chars": 1, "max_tokens": base.train.max_seq_len}})
        return ops, {}, "drop near-duplicates and rows the sequence limit would cut"
    if "dedup_semantic" not in names and _can(brief, "dedup_semantic"):
        ops.insert(names.index("dedup_minhash") + 1, {"dedup_semantic": {"threshold": 0.95}})
        return ops, {}, "drop paraphrased duplicates too (sentence embeddings), so no pattern dominates the data"
    return None


def _more_data(agent, base: Plan, brief, parent, rng):
    ops = base.recipe.to_yaml_list()
    names = [next(iter(o)) for o in ops]
    if "sample" in names:
        return [o for o in ops if next(iter(o)) != "sample"], {}, "use every training row instead of a sample"
    if "synthesize" not in names and _can(brief, "synthesize") and _memorised(parent):
        # generation is slow on small machines: only when the data, not the model, is what is short
        n = int(min(64, max(16, brief.get("train_rows", 0) // 4)))
        labels = brief.get("labels")
        args: dict = {"n": n, "seed": rng.randrange(1000)}
        if labels:
            args["output_regex"] = "|".join(re.escape(x) for x in labels)
        ops.insert(len(ops) - 1, {"synthesize": args})
        return ops, {}, f"the parent memorised its {brief.get('train_rows')} rows; add {n} LLM-written examples"
    return None


def template_room(max_seq_len: int, current: str, new: str) -> int:
    """The sequence limit for a prompt template `new` in place of `current`: a longer template takes its room
    from the answer, so the limit grows with it (~3 characters a token, rounded up to 16), or rows sized to
    the old limit would lose their answers; a shorter one gives that room back, by the same rounding, so that
    going back to an earlier template gives back the earlier plan (whose signature the tree knows: a search
    once re-ran its first plan, the same up to this limit, as a "new" prompt format)."""
    step = 16 * math.ceil(math.ceil(abs(len(new) - len(current)) / 3) / 16)
    return max(16, max_seq_len + step if len(new) >= len(current) else max_seq_len - step)


def _prompt_format(agent, base: Plan, brief, parent, rng):
    ops = base.recipe.to_yaml_list()
    i = next(i for i, o in enumerate(ops) if next(iter(o)) == "format")
    cur = ops[i]["format"].get("template", "{input}")
    goal = brief.get("goal") or brief.get("objective", "")
    options = [x for x in (t.replace("{goal}", goal) for t in TEMPLATES) if x != cur]
    new = rng.choice(options)
    ops[i] = {"format": {**ops[i]["format"], "template": new}}
    room = template_room(base.train.max_seq_len, cur, new)
    return ops, ({"max_seq_len": room} if room != base.train.max_seq_len else {}), ""


def _warm_start(agent, base: Plan, brief, parent, rng):
    t = base.train
    if parent["plan"] is None or t.warm_start == "parent" and parent["status"] != "ok":
        return None
    if _underfitting(parent):  # it was still learning: continue at its pace (a warm restart)
        return (base.recipe.to_yaml_list(), {"warm_start": "parent"},
                "the parent improved and was still learning; continue training its adapter at the same pace")
    return (base.recipe.to_yaml_list(), {"warm_start": "parent", "epochs": round(max(0.5, t.epochs / 2), 1),
                                         "learning_rate": t.learning_rate / 2}, "")


def related_candidate(brief: dict) -> dict | None:
    """The dataset the offline researcher would mix in: the most related mixable one of the brief's data
    research, when the task's train set is small and it is related enough (`catalogue.SMALL_TRAIN`,
    `RELATED_MIN`)."""
    from trex_ray.researcher.catalogue import RELATED_MIN, SMALL_TRAIN

    if brief.get("train_rows", 0) > SMALL_TRAIN:
        return None
    return next((c for c in brief.get("related_data") or [] if c.get("score", 0) >= RELATED_MIN), None)


def _balance_answers(agent, base: Plan, brief, parent, rng):
    ops = base.recipe.to_yaml_list()
    names = [next(iter(o)) for o in ops]
    rows, distinct = brief.get("train_rows") or 0, brief.get("distinct_outputs") or 0
    if "label_balance" in names or not _can(brief, "label_balance") or not distinct:
        return None
    cap = max(2, math.ceil(rows / distinct))
    if (brief.get("top_output_rows") or 0) <= 1.5 * cap:
        return None  # no training answer is far above the mean: balancing would cut next to nothing
    # a fixed seed: the plan is the same plan each time it is made, so the tree knows it was tried
    ops.insert(names.index("format"), {"label_balance": {"max_per_label": cap, "seed": 0}})
    return ops, {}, (f"the parent gave one answer to most val rows; cap every answer at {cap} training rows (the "
                     f"mean over its {distinct} distinct answers) so that no answer's frequency is what is learnt")


def _related_data(agent, base: Plan, brief, parent, rng):
    c = related_candidate(brief)
    ops = base.recipe.to_yaml_list()
    names = [next(iter(o)) for o in ops]
    if c is None or "mix" in names or not _can(brief, "mix"):
        return None
    from trex_ray.researcher.catalogue import Candidate

    n = max(1, brief.get("train_rows", 0))
    extra = max(1, min(int(c.get("rows") or n), 2 * n))  # at most twice the task's own rows
    source = {k: v for k, v in Candidate.from_dict(c).mix_source(round(extra / n, 4)).items() if v is not None}
    ops.insert(1, {"mix": {"sources": [source], "total": n + extra, "seed": rng.randrange(1000)}})
    if "decontaminate" not in names:  # found data may hold val or test questions: they go, counted
        ops.insert(2, {"decontaminate": {}})
    return ops, {}, (f"the task has {brief.get('train_rows')} training rows; add {extra} rows of {c.get('name')} "
                     f"(relevance {c.get('score', 0):.2f}, license {c.get('license') or 'unknown'}), with val and "
                     "test questions removed from them")


def _can(brief: dict, op: str) -> bool:
    """Whether the op is in the catalogue the brief was written with (older briefs: the basic ops only)."""
    return op in brief.get("data_ops", ())


@dataclass(frozen=True)
class Direction:
    """One way to refine a plan. `prior`: its weight with nothing known; `boosts`: weight added for each
    signal of the parent's result (`signals`); `failed`: its weight after the parent's latest child failed
    in training, by the kind of failure (diverged, resources; "any": the default for a kind not named);
    `change`: the plan with it applied (None at its limit); `why`: the rationale written into the plan;
    `against`: signals of the parent's result that rule it out (the diagnosis says it goes the wrong way:
    training less, or with a smaller step or adapter, a model whose val was still rising at its cap);
    `remedies`: decisive signals it answers. A decisive signal of the parent's (`DECISIVE`) leaves the
    directions that answer it their weight and damps the others (`DAMPED`): a model seen on val to be
    still improving when its training stopped gains most from more training, not from a new prompt; one
    that gives one answer to most inputs (collapsed) from evened-out answers or a smaller step, not from
    the generic refinements (EconLogicQA lite: six of them all kept the one answer)."""

    name: str
    prior: float
    boosts: dict
    failed: dict
    change: Callable
    why: str
    against: tuple = ()
    remedies: tuple = ()


DECISIVE = ("still rising", "collapsed")
DAMPED = 0.25  # the weight left to a direction that does not answer a decisive signal


DIRECTIONS: tuple[Direction, ...] = (
    Direction("more epochs", 1.0, {"underfitting": 2.0, "format": 0.5, "wrong value": 0.5},
              {"any": 0.2, "diverged": 0.2, "resources": 0.0},
              _more_epochs, "the parent's loss was still falling; train longer", against=("memorised",),
              remedies=("still rising",)),
    Direction("fewer epochs", 0.5, {"memorised": 1.0}, {"any": 1.0, "diverged": 1.0, "resources": 4.0},
              _train(lambda t: None if t.epochs <= 0.5 else {"epochs": round(max(0.5, t.epochs * 0.6), 1)}),
              "limit over-fitting by training less", against=("underfitting",)),
    Direction("higher learning rate", 1.0, {"underfitting": 1.5}, {"diverged": 0.0},
              _train(lambda t: None if t.learning_rate >= 3e-2 else {"learning_rate": min(3e-2, t.learning_rate * 2)}),
              "the adapter moved too little; take larger steps", remedies=("still rising",)),
    Direction("lower learning rate", 0.7, {"memorised": 1.0, "regressed": 0.5, "collapsed": 1.0},
              {"any": 3.0, "diverged": 8.0, "resources": 3.0},
              _train(lambda t: None if t.learning_rate <= 2e-5 else {"learning_rate": t.learning_rate / 2}),
              "steadier optimisation with a smaller step", against=("underfitting",), remedies=("collapsed",)),
    Direction("more LoRA capacity", 0.8, {"underfitting": 1.0, "wrong value": 0.5}, {"resources": 0.0},
              _more_capacity, "more adapter capacity (MLP projections too) for what the model gets wrong"),
    Direction("less LoRA capacity", 0.4, {}, {"any": 1.0, "diverged": 1.0, "resources": 3.0},
              _train(lambda t: None if t.lora_r <= 2 else {"lora_r": t.lora_r // 2,
                                                           "lora_alpha": max(1, t.lora_alpha // 2)}),
              "a smaller adapter generalises better on little data", against=("underfitting",)),
    Direction("cleaner data", 0.5, {"memorised": 0.5, "regressed": 0.5}, {}, _cleaner_data,
              "drop near-duplicates and rows the sequence limit would cut"),
    Direction("more data", 0.5, {"memorised": 1.0}, {"resources": 0.0}, _more_data,
              "more training examples"),
    Direction("prompt format", 0.6, {"format": 1.5}, {}, _prompt_format,
              "the outputs miss the expected format; state the task and answer format in the prompt"),
    # one answer to most inputs: the answers' frequencies were learnt; train on them evened out
    Direction("balance answers", 0.0, {"collapsed": 2.5}, {"resources": 0.0}, _balance_answers,
              "the parent gave one answer to most val rows; even out the answers' frequencies in training",
              remedies=("collapsed",)),
    # a small task's most related dataset found by data research (offered only where there is one)
    Direction("add related data", 0.5, {"memorised": 1.0, "wrong value": 0.5}, {"resources": 0.0}, _related_data,
              "more examples of the same kind, from a related dataset"),
    # a parent still learning at its cap: continuing its adapter is the cheapest way to train longer
    Direction("warm start from parent", 0.0, {"improved": 2.0, "underfitting": 2.0}, {}, _warm_start,
              "the parent improved; continue training its adapter gently", remedies=("still rising",)),
)
BY_NAME = {d.name: d for d in DIRECTIONS}


class HeuristicResearcher:
    name = "heuristic"

    # -- requirement analysis ---------------------------------------------------------------------
    def analyze(self, profile: dict, baseline: dict) -> dict:
        train = profile["train"]
        n = train["rows"]
        risks = []
        if n < 300:
            risks.append(f"small training set ({n} rows): over-fitting, keep epochs and capacity moderate")
        if profile.get("train_duplicates"):
            risks.append(f"{profile['train_duplicates']} duplicate training rows")
        if profile.get("train_val_overlap"):
            risks.append(f"{profile['train_val_overlap']} training inputs also appear in val (contamination)")
        if profile.get("classification_like") and profile.get("majority_share", 0) > 0.6:
            risks.append(f"label imbalance: majority label is {profile['majority_share']:.0%}")
        cats = self._categories(baseline.get("bad_cases", []))
        if form_faults(cats) > len(baseline.get("bad_cases", [])) / 2:
            risks.append("the base model mostly answers in the wrong format: training on the answer format matters")
        start = first_settings(profile)
        return {
            "objective": profile.get("goal") or f"improve {profile['metric']} on {profile['name']}",
            "metric": profile["metric"],
            "baseline_val": baseline.get("score"),
            "train_rows": n,
            "risks": risks,
            "baseline_failures": cats,
            "start": {**{k: v for k, v in start.items() if k != "why"},
                      "dedup": bool(profile.get("train_duplicates"))},
            "sizing": start["why"],
            "max_epochs": profile.get("max_epochs"),
            "goal": profile.get("goal", ""),
            "labels": sorted(profile.get("label_balance") or {}) or None,
            "distinct_outputs": (profile.get("train") or {}).get("distinct_outputs"),
            "top_output_rows": (profile.get("train") or {}).get("top_output_rows"),
            "data_ops": [op["name"] for op in catalogue()],
            # data research (the search's catalogue): what may be mixed in, most related first
            "related_data": [c for c in profile.get("related_data") or [] if c.get("mixable")],
            "research": profile.get("research") or {},
        }

    # -- planning ---------------------------------------------------------------------------------
    def initial_plan(self, brief: dict) -> Plan:
        s = brief["start"]
        ops: list[dict] = [{"load": {}}]
        if s["dedup"]:
            ops.append({"dedup_exact": {}})
        ops.append({"format": {"template": "{input}", "system": self._system(brief)}})
        return Plan(
            direction="standard LoRA SFT",
            rationale="A first LoRA fine-tune on the task data with settings sized to the data profile"
                      + (f" ({'; '.join(brief['sizing'])})." if brief.get("sizing") else "."),
            recipe=Recipe(ops=ops),
            train=TrainConfig(lora_r=s["lora_r"], lora_alpha=2 * s["lora_r"], learning_rate=s["learning_rate"],
                              epochs=s["epochs"], batch_size=s["batch_size"], max_seq_len=s["max_seq_len"],
                              **({"target_modules": s["target_modules"]} if s.get("target_modules") else {})),
            eval=EvalConfig(max_new_tokens=s["max_new_tokens"]),
        )

    def _system(self, brief: dict) -> str:
        return task_system(brief.get("goal") or "")

    def propose(self, brief: dict, context: dict, rng: random.Random) -> Plan:
        tried = set(context.get("tried", []))
        parent = context["parent"]
        # plans made at the same time from one parent (the search says how many others are under way:
        # `concurrent`) cannot see each other: they share one draw of the directions, seeded by the search
        # seed and what the parent has tried, and each takes its own place in it
        skip = context.get("concurrent")
        if skip is not None:
            rng = random.Random(f"{context.get('seed', 0)}:{parent['id']}:{len(tried)}")
        skip = skip or 0
        if parent["plan"] is None:  # the root: start from the standard plan
            first = self.initial_plan(brief)
            if first.signature(parent["id"]) not in tried:
                if not skip:
                    return first
                skip -= 1  # the first place is the standard plan's
            base = first
        else:
            base = Plan.model_validate(parent["plan"])
        if not skip and related_candidate(brief) and "add related data" not in context.get("directions_taken", ()):
            # a small task with related data found: tried once, early (data is its largest lever); after
            # that its weight follows what it did, like any direction's
            plan = self._apply("add related data", base, brief, parent, rng)
            plan = plan and self._guard(plan, context)
            if plan is not None and plan.signature(parent["id"]) not in tried:
                return plan
        weights = self._weights(brief, context)
        names = list(weights)
        # draw directions without replacement by weight; the first untried plan wins
        order = []
        pool = dict(weights)
        while pool:
            pick = rng.choices(list(pool), weights=list(pool.values()))[0]
            order.append(pick)
            pool.pop(pick)
        if order and skip:
            order = order[skip % len(order):] + order[:skip % len(order)]
        for name in order:
            plan = self._apply(name, base, brief, parent, rng)
            plan = plan and self._guard(plan, context)
            if plan is not None and plan.signature(parent["id"]) not in tried:
                return plan
        # every single step was tried: combine two directions
        for _ in range(50):
            a, b = rng.sample(names, 2)
            first = self._apply(a, base, brief, parent, rng)
            plan = self._apply(b, first, brief, parent, rng) if first else None
            if plan is not None and "warm start from parent" in (a, b):
                plan = plan.model_copy(update={"train": plan.train.model_copy(update={"warm_start": "parent"})})
            plan = plan and self._guard(plan, context)
            if plan is not None and plan.signature(parent["id"]) not in tried:
                return plan.model_copy(update={"direction": f"{a} + {b}"})
        # last resort: a random learning-rate jitter is always new
        lr = base.train.learning_rate * rng.uniform(0.5, 2.0)
        return self._guard(base.model_copy(update={
            "direction": "learning-rate jitter", "rationale": "Every structured refinement of this node was tried.",
            "train": base.train.model_copy(update={"learning_rate": lr}),
        }), context)

    def _weights(self, brief: dict, ctx: dict) -> dict[str, float]:
        """Each direction's prior, moved by what is known of the parent (`signals`), from `DIRECTIONS`;
        then by the insights: a direction that helped in this tree is likelier, one that hurt twice below
        this parent is dropped here."""
        parent = ctx["parent"]
        sig = signals(ctx)
        if "failed" in sig:  # what failed decides: the failure table replaces the priors
            w = {d.name: d.failed.get(sig["failed"], d.failed.get("any", d.prior)) for d in DIRECTIONS}
        else:
            w = {d.name: d.prior + sum(v for k, v in d.boosts.items() if k in sig) for d in DIRECTIONS}
            if "improved" in sig and parent["direction"] in w:  # the last step helped: more of it
                w[parent["direction"]] += 1.0
            for d in DIRECTIONS:  # what the diagnosis contradicts is out, whatever helped before
                if any(k in sig for k in d.against):
                    w[d.name] = 0.0
                elif any(k in sig and k not in d.remedies for k in DECISIVE):  # and what it does not answer waits
                    w[d.name] *= DAMPED
        if sig.get("broke") in w:  # it failed from this very parent last time
            w[sig["broke"]] *= 0.25
        everywhere, here = ctx.get("directions") or {}, ctx.get("directions_here") or {}
        for name in w:
            helped = (everywhere.get(name) or {}).get("helped", 0)
            w[name] *= 1.0 + 0.5 * min(helped, 3)
            if (here.get(name) or {}).get("hurt", 0) >= 2:
                w[name] = 0.0
        return {k: v for k, v in w.items() if v > 0}

    @staticmethod
    def _guard(plan: Plan, ctx: dict) -> Plan:
        """Keep a plan clear of what failed from the same parent: below the learning rate that diverged,
        a smaller batch and rank than ran out of memory, fewer epochs than ran out of time."""
        t, notes = plan.train, []
        for c in ctx.get("children") or []:
            f = c.get("failed_train") or {}
            kind = c.get("error_type")
            if c["status"] != "failed" or not f:
                continue
            if kind == "diverged" and "learning_rate" in f and t.learning_rate > f["learning_rate"] / 2:
                t = t.model_copy(update={"learning_rate": f["learning_rate"] / 2})
                notes.append(f"node {c['id']} diverged at lr {f['learning_rate']:.1e}: lr halved below it")
            elif kind == "out_of_memory":
                upd = {}
                if "batch_size" in f and t.batch_size >= f["batch_size"] > 1:
                    upd["batch_size"] = f["batch_size"] // 2
                if "lora_r" in f and t.lora_r >= f["lora_r"] > 1:
                    upd.update(lora_r=f["lora_r"] // 2, lora_alpha=max(1, t.lora_alpha * (f["lora_r"] // 2) // t.lora_r))
                if upd:
                    t = t.model_copy(update=upd)
                    notes.append(f"node {c['id']} ran out of memory: " + ", ".join(f"{k} {v}" for k, v in upd.items()))
            elif kind == "timeout" and "epochs" in f and t.epochs > f["epochs"] / 2:
                t = t.model_copy(update={"epochs": max(0.1, round(f["epochs"] / 2, 2))})
                notes.append(f"node {c['id']} ran out of time at {f['epochs']} epochs: half as many")
        if not notes:
            return plan
        return plan.model_copy(update={"train": TrainConfig.model_validate(t.model_dump()),
                                       "rationale": (plan.rationale + " (" + "; ".join(notes) + ")").strip()})

    def _apply(self, name: str, base: Plan, brief: dict, parent: dict, rng: random.Random) -> Plan | None:
        """The plan `base` with direction `name` applied (None where it cannot go further)."""
        d = BY_NAME.get(name)
        if d is None:
            return None
        change = d.change(self, base, brief, parent, rng)
        if change is None:
            return None
        ops, train_update, why = change
        return self._plan(base, name, why or d.why, ops, train_update)

    def _plan(self, base: Plan, direction: str, why: str, ops: list, train_update: dict) -> Plan:
        train = base.train.model_copy(update=train_update)
        if direction != "warm start from parent" and "warm_start" not in train_update:
            train = train.model_copy(update={"warm_start": "base"})
        return Plan(direction=direction, rationale=why, recipe=Recipe(ops=ops),
                    train=TrainConfig.model_validate(train.model_dump()), eval=base.eval)

    # -- diagnosis and insights ---------------------------------------------------------------------
    def _categories(self, bad_cases: list[dict]) -> dict[str, int]:
        c: Counter = Counter()
        for b in bad_cases:
            got, exp = (b.get("got") or "").strip(), str(b.get("expected", "")).strip()
            if not got:
                c["empty"] += 1
            elif looping(got):
                c["repetition"] += 1
            elif not exp:  # graded by a checker, with no reference text: only the content can be wrong
                c["wrong value"] += 1
            elif len(got) > 3 * max(len(exp), 4):
                c["verbose"] += 1
            elif shape(got) != shape(exp):
                c["wrong format"] += 1
            else:
                c["wrong value"] += 1
        return dict(c)

    def diagnose(self, result: dict, parent: dict | None) -> dict:
        if result.get("status") != "ok":
            err = result.get("error") or {}
            return {"text": f"failed in {err.get('stage', '?')}: {err.get('message', '')[:200]}", "categories": {}}
        cats = self._categories(result.get("bad_cases", []))
        score = result.get("score") or 0.0
        parts = [f"val {score:.3f}"]
        if parent and parent.get("score") is not None:
            parts.append(f"({score - parent['score']:+.3f} vs parent)")
        nbad = result.get("val", {}).get("num_bad", sum(cats.values()))
        if cats:
            total = sum(cats.values())
            parts.append(f"{nbad} failures; of {total} sampled: " +
                         ", ".join(f"{v} {k}" for k, v in sorted(cats.items(), key=lambda kv: -kv[1])))
        answers = (result.get("val") or {}).get("answers")
        if collapsed(answers):
            parts.append(f"one answer to {answers['top_count']} of {answers['n']} val rows ({answers['top'][:60]!r}, "
                         f"wrong for {top_wrong(answers)}): a learnt prior, not the task")
        ts = result.get("train_stats", {})
        curve = ts.get("loss_curve") or []
        if ts.get("stopped"):
            vals = ts.get("val_curve") or []
            where = f"val at step {ts.get('kept_step')} of {ts.get('steps')} kept"
            parts.append({"patience": f"stopped when val stopped improving ({where})",
                          "perfect score": f"stopped at a perfect val score ({where})"}.get(
                ts["stopped"], f"val still rising at the epoch cap: under-trained ({where})"
                if ts.get("kept_step") == ts.get("steps") and len(vals) > 1 else f"trained to the epoch cap ({where})"))
        if curve:
            parts.append(f"train loss {curve[0]:.2f} -> {curve[-1]:.2f}")
            drop = loss_tail_drop(curve)
            # where val was followed, it (above), not the loss, says whether training was long enough
            if not ts.get("stopped") and _still_learning(curve[-1], drop):
                parts.append("under-fitting" + (f" (the loss still fell {drop:.0%} in the last quarter)"
                                                if drop is not None and drop >= 0.1 else ""))
            elif curve[-1] < 0.02:
                parts.append("memorised the training set")
        return {"text": "; ".join(parts), "categories": cats}

    def distill(self, nodes: list[dict]) -> list[str]:
        by_id = {n["id"]: n for n in nodes}
        deltas: dict[str, list[float]] = defaultdict(list)
        failed: Counter = Counter()
        for n in nodes:
            if n["parent_id"] is None:
                continue
            if n["status"] == "failed":
                failed[n["direction"]] += 1
                continue
            p = by_id.get(n["parent_id"])
            if p and p.get("score") is not None and n.get("score") is not None:
                deltas[n["direction"]].append(n["score"] - p["score"])
        out = []
        for d, xs in sorted(deltas.items(), key=lambda kv: -sum(kv[1]) / len(kv[1])):
            mean = sum(xs) / len(xs)
            verdict = "helped" if mean > 0.005 else "hurt" if mean < -0.005 else "made no difference"
            out.append(f"{d}: {verdict} ({mean:+.3f} mean change over the parent, {len(xs)} trial(s))")
        for d, k in failed.items():
            out.append(f"{d}: {k} trial(s) failed")
        return out
