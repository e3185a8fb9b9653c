"""Molecule metrics for two FT-Bench tasks, as `trex_ray` metric plugins: TOMG-Bench and oMeBench.

Both are re-implemented here from the official evaluation code (read, not copied); RDKit is the only
extra dependency and is imported on first use, so `format_mechanism`/`parse_mechanism` work without it.

TOMG-Bench (`tomg_bench`, text-based open molecule generation)
==============================================================
Reference: phenixace/TOMG-Bench `evaluate.py` + `utils/evaluation.py`, and its successor by the same
authors, phenixace/S2-TOMG-Bench (`evaluate.py`, `utils/evaluation.py`), whose definitions are the ones
followed here (see "Which official version" below).

context (one per example): {"subtask": "MolCustom/AtomNum" (or just "AtomNum"), **the test.csv row}
(values may be strings). The reference text is not used (open generation has no gold answer).

Answer extraction (`extract_smiles`): the official post-processing (`correct_text`) takes the
"molecule" value of the first {...} JSON object in the output, else the whole output with newlines
turned into spaces; then keeps what follows the last "=>" or "->" and drops a [...] wrapper. RDKit
then parses that string, which in effect keeps its first whitespace-separated token (RDKit reads the
rest as the molecule's name). Here the candidates are tried in this order and the first one that is a
valid molecule is kept: (1) a JSON/dict "molecule" value (double or single quotes); (2) \\boxed{...};
(3) the last "Molecule:/SMILES:/Answer:" marker; (4) the official rule above; (5) the last
whitespace-separated token of the output that parses (quotes, backticks and trailing , ; . stripped).
In a multi-word output, one- and two-letter alphabetic words such as "I" or "CO" are never taken
(RDKit reads "I think ..." as iodine). <think>...</think> blocks are dropped first. When no candidate
parses, the official-rule candidate is returned (it then fails as invalid). Option
`extraction: official` uses only the official rule.

Validity: RDKit `MolFromSmiles` (default sanitisation) gives a molecule with at least one atom.
Invalid or empty output fails the example.

Success per sub-task (1/0 per example):
- MolCustom/AtomNum: for each of the 17 elements of the file (C, O, N, S, F, Cl, Br, I, P, B, Si, Se,
  Te, As, Sb, Bi, Po) the count of atoms of that element in the molecule (explicit graph atoms, so H
  is never counted) equals the target; elements not mentioned have target 0, so they must be absent.
- MolCustom/BondNum: single, double, triple and aromatic bond counts (RDKit bond types after
  aromaticity perception) and `Descriptors.NumRotatableBonds` equal their targets; a target of 0 is
  NOT checked (the instructions only name the non-zero counts, e.g. "The molecule consists of 1 double
  bond.").
- MolCustom/FunctionalGroup: the number of SMARTS matches (RDKit `GetSubstructMatches`, unique
  matches) equals the target for the 18 groups the official list checks: benzene ring, hydroxyl,
  anhydride, aldehyde, ketone, carboxyl, ester, amide, amine, nitro, halo, nitrile, thiol, sulfide,
  disulfide, sulfoxide, sulfone, borane (a target of 0 is checked: the group must be absent). The
  file's `thioether` column is not checked (the official list leaves it out; it is still reported in
  the details). The SMARTS are those of `_GROUP_SMARTS` below; "sulfide" counts divalent S without H
  minus S-S pairs.
- MolEdit/AddComponent: count(added_group, output) == count(added_group, source) + 1.
- MolEdit/DelComponent: count(removed_group, output) == count(removed_group, source) - 1.
- MolEdit/SubComponent: both of the above (removed group -1 and added group +1).
- MolOpt/LogP, MR, QED: Crippen `MolLogP`, `MolMR`, or `QED.qed` of the output is strictly lower than
  that of the source when the instruction contains "lower" or "decrease", else strictly higher.
Score: the success rate of each sub-task present, averaged over those sub-tasks (the paper's Acc);
per-example: 1/0. Details: the sub-task, the extracted SMILES, validity, success and what was checked;
for MolEdit/MolOpt also the Morgan-fingerprint Tanimoto similarity to the source (radius 2, 2048 bits;
the official secondary "similarity" metric; not part of the score).

Which official version: the legacy repo's older `utils/evaluation.py` used simpler SMARTS (e.g.
benzene '[cX3]1...', nitro '[NX3](=O)=O', amide '[NX3][CX3](=O)') and checked zero bond counts. The
successor's SMARTS reproduce the released data exactly: every one of the 1,500 MolCustom answers of
OpenMolIns-light satisfies its own instruction with them (the older SMARTS: 161/500 FunctionalGroup
answers), and every MolEdit source molecule holds the group to remove with them (the older nitro SMARTS,
blind to the charged form, finds none in any of the 462 sources whose nitro group is to be removed).
So the successor's SMARTS and its BondNum zero-skip are used.

Deviations from the official scoring:
- Extraction is more lenient (steps 1-3 and 5 above; `extraction: official` turns this off). Where the
  official rule already yields a valid molecule it is normally what is kept, but an explicit marker,
  JSON value or \\boxed{} answer comes first.
- An empty molecule (0 atoms, e.g. empty output) is invalid (officially an empty string parses).
- The <think> block removal and quote/backtick stripping are additions.
- A context that lacks the constraint columns has them read from its Instruction text (MolCustom
  counts; the source molecule; MolEdit groups in order of mention, the removed one first as in every
  template); a context with neither (or with an unknown group) scores 0 with an "error" detail (the
  official script would crash). The MolOpt direction always comes from the Instruction, as officially.
- wAcc (accuracy weighted by similarity/novelty) and novelty (needs ZINC-250k) are not computed.

oMeBench (`omebench`, organic reaction mechanisms)
===================================================
Reference: skylarkie/oMeBench `scripts/utils_eval.py` (function oMeS) and `scripts/run.py`
(`evaluate_results`).

Text format (what the model is trained to emit; `format_mechanism` writes it, `parse_mechanism`
reads it), one line per step, numbered from 1:

    1. proton_transfer (acid_base_proton_transfer): [CH2-]C=O
    2. addition (nucleophilic_addition): CC([O-])CC=O
    3. proton_transfer (acid_base_proton_transfer): CC(O)CC=O

i.e. "<n>. <type> (<subtype>): <intermediate SMILES>"; the "(<subtype>)" part is left out only when
the step has no subtype (a few Template steps). Step numbers are rewritten 1..N (a few
Gold records repeat or skip numbers; scoring ignores them). `parse_mechanism` keeps every line of that
shape ("Step 1:", "1)", bullets and ** are allowed; the SMILES is the first token after the first
colon) and ignores all other lines; if the output holds the official JSON list format
([{"step", "type", "subtype", "intermediate_smiles"}, ...]) that list is used instead.

context: the gold reaction record (its `mechanism` list); without one, the reference text is parsed.

oMeS (as the official function): gold steps (label, SMILES, weight), predicted steps (label, SMILES).
The step label compared is the SUBTYPE (the official evaluation builds both sequences from `subtype`,
not `type`). Sequences are aligned by a weighted Needleman-Wunsch DP where each cell keeps
(S_total, S_partial, penalty) and the best move maximises, in this order, S_total, S_partial, the
priority of the move (diagonal with equal labels 3 > diagonal with different labels 2 > gap 1) and the
penalty (-1e-6 per gap or label mismatch); ties go to "skip gold", then "skip pred", then diagonal.
A diagonal move with equal labels adds w to S_total if both SMILES canonicalise to the same non-empty
RDKit canonical SMILES, and w * sigma(Tanimoto) to S_partial when both are valid, with Morgan
fingerprints (radius 2, 2048 bits) and sigma(s) = s if s >= 0.6 else 0. Then
V = valid predicted SMILES / max(1, #pred); L = diagonal-with-equal-labels moves on the traced
alignment / max(1, #gold). All four are rounded to 2 decimals per reaction, as officially. Corpus
numbers are means over reactions (an unparseable output, i.e. no step, scores 0 on all four, as the
official script does for a non-list output).

Main number: S_partial (the partial mechanism score: logic-gated, similarity-weighted credit) is the
per-example and corpus score; option `main` picks S_total, S_partial, V or L instead. All four are
in the details (with the alignment).

Deviations from the official scoring:
- Output format: a numbered text list instead of the JSON list the official prompt asks for (the JSON
  list is still accepted).
- Labels are compared after case-folding and turning runs of spaces/underscores into one "_"; a step
  that gives only a type with a single official subtype (proton_transfer, electron_transfer,
  coordination, dissociation) gets that subtype.
- Step weights: the gold `step_weight`s are used as they are when they sum to 1 (all Gold records),
  rescaled to sum 1 otherwise; when a step has none or they sum to 0 (all Template records: missing or
  all 0) every step weighs 1/N, so every score stays in [0, 1].
- A step (gold or predicted) without a subtype is labelled by its type, or by that type's only official
  subtype when it has just one (so a Template step typed "proton_transfer" without subtype and the
  prediction "proton_transfer" still agree).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Mapping, Sequence

from trex_ray.metrics import Metric, Scored

# --------------------------------------------------------------------------------------------------
# RDKit helpers (imported lazily)


@lru_cache(maxsize=1)
def _rdkit():
    try:
        from rdkit import Chem, DataStructs, RDLogger
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("the tomg_bench and omebench metrics need RDKit: pip install rdkit") from e
    from rdkit.Chem import Descriptors
    from rdkit.Chem.rdFingerprintGenerator import GetMorganGenerator

    RDLogger.DisableLog("rdApp.*")
    return {"Chem": Chem, "DataStructs": DataStructs, "Descriptors": Descriptors,
            "morgan": GetMorganGenerator(radius=2, fpSize=2048)}


@lru_cache(maxsize=65536)
def _mol(smiles: str):
    """The RDKit molecule, or None when the text is not a valid, non-empty SMILES."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    try:
        mol = _rdkit()["Chem"].MolFromSmiles(smiles)
    except Exception:  # noqa: BLE001 - RDKit raises on some malformed inputs
        return None
    return mol if mol is not None and mol.GetNumAtoms() > 0 else None


@lru_cache(maxsize=65536)
def _canonical(smiles: str) -> str:
    mol = _mol(smiles)
    return "" if mol is None else _rdkit()["Chem"].MolToSmiles(mol)


@lru_cache(maxsize=65536)
def _fingerprint(smiles: str):
    mol = _mol(smiles)
    return None if mol is None else _rdkit()["morgan"].GetFingerprint(mol)


def _tanimoto(a: str, b: str) -> float:
    fa, fb = _fingerprint(a), _fingerprint(b)
    if fa is None or fb is None:
        return 0.0
    return float(_rdkit()["DataStructs"].TanimotoSimilarity(fa, fb))


@lru_cache(maxsize=None)
def _smarts(pattern: str):
    return _rdkit()["Chem"].MolFromSmarts(pattern)


# --------------------------------------------------------------------------------------------------
# TOMG-Bench

TOMG_SUBTASKS = ("MolCustom/AtomNum", "MolCustom/BondNum", "MolCustom/FunctionalGroup",
                 "MolEdit/AddComponent", "MolEdit/DelComponent", "MolEdit/SubComponent",
                 "MolOpt/LogP", "MolOpt/MR", "MolOpt/QED")
_SUB_BY_SHORT = {s.split("/")[1].casefold(): s for s in TOMG_SUBTASKS}

ELEMENTS = {"carbon": 6, "oxygen": 8, "nitrogen": 7, "sulfur": 16, "fluorine": 9, "chlorine": 17, "bromine": 35,
            "iodine": 53, "phosphorus": 15, "boron": 5, "silicon": 14, "selenium": 34, "tellurium": 52,
            "arsenic": 33, "antimony": 51, "bismuth": 83, "polonium": 84}
BOND_TYPES = ("single", "double", "triple", "rotatable", "aromatic")

# Functional-group SMARTS (the definitions of the successor repo's evaluation, which the data follows).
# A tuple (pattern, minus) counts matches of pattern minus matches of minus.
_GROUP_SMARTS: dict[str, str | tuple[str, str]] = {
    "benzene_ring": "[cR1]1[cR1][cR1][cR1][cR1][cR1]1",
    "hydroxyl": "[OX2H]",
    "anhydride": "[CX3](=[OX1])[OX2][CX3](=[OX1])",
    "aldehyde": "[CX3H1](=O)[#6]",
    "ketone": "[#6][CX3](=O)[#6]",
    "carboxyl": "[CX3](=O)[OX2H1]",
    "ester": "[#6][CX3](=O)[OX2H0][#6]",
    "amide": "[NX3][CX3](=[OX1])[#6]",
    "amine": "[NX3;H2,H1;!$(NC=O)]",
    "nitro": "[$([NX3](=O)=O),$([NX3+](=O)[O-])][!#8]",
    "halo": "[F,Cl,Br,I]",
    "thioether": "[SX2][CX4]",
    "nitrile": "[NX1]#[CX2]",
    "thiol": "[#16X2H]",
    "sulfide": ("[#16X2H0]", "[#16X2H0][#16X2H0]"),
    "disulfide": "[#16X2H0][#16X2H0]",
    "sulfoxide": "[$([#16X3]=[OX1]),$([#16X3+][OX1-])]",
    "sulfone": "[$([#16X4](=[OX1])=[OX1]),$([#16X4+2]([OX1-])[OX1-])]",
    "borane": "[BX3]",
}
# The FunctionalGroup sub-task checks these (the file also has "thioether", which is not checked).
FG_CHECKED = ("benzene_ring", "hydroxyl", "anhydride", "aldehyde", "ketone", "carboxyl", "ester", "amide", "amine",
              "nitro", "halo", "nitrile", "thiol", "sulfide", "disulfide", "sulfoxide", "sulfone", "borane")
_PROPERTY = {"MolOpt/LogP": "logP", "MolOpt/MR": "MR", "MolOpt/QED": "QED"}


def _group_key(name: str) -> str | None:
    """'benzene ring', 'benzene rings', 'benzene_ring' -> 'benzene_ring'; None when unknown."""
    key = re.sub(r"[\s_]+", "_", str(name).strip().casefold())
    if key in _GROUP_SMARTS:
        return key
    if key.endswith("s") and key[:-1] in _GROUP_SMARTS:
        return key[:-1]
    if key.endswith("_group") and key[:-6] in _GROUP_SMARTS:
        return key[:-6]
    return None


def group_count(smiles: str, group: str) -> int | None:
    """Number of `group` matches in the molecule (None: invalid SMILES)."""
    mol = _mol(smiles)
    key = _group_key(group)
    if mol is None:
        return None
    if key is None:
        raise ValueError(f"unknown functional group {group!r}")
    pat = _GROUP_SMARTS[key]
    if isinstance(pat, tuple):
        return len(mol.GetSubstructMatches(_smarts(pat[0]))) - len(mol.GetSubstructMatches(_smarts(pat[1])))
    return len(mol.GetSubstructMatches(_smarts(pat)))


def atom_counts(smiles: str) -> dict[str, int] | None:
    mol = _mol(smiles)
    if mol is None:
        return None
    nums = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return {name: nums.count(z) for name, z in ELEMENTS.items()}


def bond_counts(smiles: str) -> dict[str, int] | None:
    mol = _mol(smiles)
    if mol is None:
        return None
    bt = _rdkit()["Chem"].BondType
    kinds = [b.GetBondType() for b in mol.GetBonds()]
    return {"single": kinds.count(bt.SINGLE), "double": kinds.count(bt.DOUBLE), "triple": kinds.count(bt.TRIPLE),
            "rotatable": int(_rdkit()["Descriptors"].NumRotatableBonds(mol)),
            "aromatic": kinds.count(bt.AROMATIC)}


@lru_cache(maxsize=65536)
def mol_property(smiles: str, prop: str) -> float | None:
    """'logP' (Crippen), 'MR' (Crippen molar refractivity) or 'QED'; None for an invalid SMILES."""
    mol = _mol(smiles)
    if mol is None:
        return None
    desc = _rdkit()["Descriptors"]
    if prop == "logP":
        return float(desc.MolLogP(mol))
    if prop == "MR":
        return float(desc.MolMR(mol))
    if prop == "QED":
        return float(desc.qed(mol))
    raise ValueError(f"unknown property {prop!r}")


def is_valid_smiles(smiles: str | None) -> bool:
    return smiles is not None and _mol(smiles) is not None


# ---- answer extraction

_THINK_RE = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_JSON_RE = re.compile(r"\{.*?\}", re.S)
_MOL_KEY_RE = re.compile(r"""["']molecule["']\s*:\s*["']([^"'\s]+)["']""", re.I)
_BOXED_RE = re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*([^{}\s]+?)\s*\}")
_MARKER_RE = re.compile(r"(?:molecule|smiles|answer)\s*(?:string)?\s*(?:is)?\s*[:=]\s*[`'\"]?([^\s`'\"]+)", re.I)
_STRIP_CHARS = "`'\"*"


def _arrow_tail(s: str) -> str:
    for sep in ("=>", "->"):
        if sep in s:
            s = s.split(sep)[-1].strip()
    return s


def _official_candidate(text: str) -> str:
    """The official post-processing, up to the string RDKit reads (its first token)."""
    match = _JSON_RE.search(text)
    if match:
        blob = match.group().replace('""', '"')
        try:
            obj = json.loads(blob)
            s = obj.get("molecule", blob) if isinstance(obj, dict) else blob
        except Exception:  # noqa: BLE001
            parts = blob.split(":", 1)
            s = parts[1].strip().strip("}").strip().strip('"').strip() if len(parts) > 1 else blob
        s = _arrow_tail(str(s)).strip()
    else:
        s = _arrow_tail(text.replace("\n", " ").strip())
        if len(s) >= 2 and s[0] == "[" and s[-1] == "]":
            s = s[1:-1]
    parts = s.split()
    return parts[0] if parts else ""


def _clean_token(tok: str) -> list[str]:
    """Variants of a token to try, least altered first."""
    out = [tok]
    t = tok.strip(_STRIP_CHARS)
    out.append(t)
    t2 = t.rstrip(",;!?")
    out.append(t2)
    out.append(t2.rstrip("."))
    out.append(t2.rstrip(".").strip(_STRIP_CHARS))
    seen, res = set(), []
    for v in out:
        if v and v not in seen:
            seen.add(v)
            res.append(v)
    return res


def _first_valid(tok: str) -> str | None:
    for v in _clean_token(tok):
        if _mol(v) is not None:
            return v
    return None


def _wordlike(tok: str) -> bool:
    bare = tok.strip(_STRIP_CHARS + ".,;:!?()")
    return bare.isalpha() and len(bare) <= 2


def extract_smiles(text: str | None, lenient: bool = True) -> str | None:
    """The SMILES answer in a model output: the first valid candidate (see the module docstring for the
    order), else the official rule's candidate (which may be invalid); None for empty output."""
    if text is None:
        return None
    text = str(text)
    if not text.strip():
        return None
    official = _official_candidate(text)
    if not lenient:
        return official or None
    body = _THINK_RE.sub(" ", text)
    candidates: list[str] = []
    m = _MOL_KEY_RE.search(body)
    if m:
        candidates.append(_arrow_tail(m.group(1)))
    candidates += [m.group(1) for m in _BOXED_RE.finditer(body)][-1:]
    candidates += [m.group(1) for m in _MARKER_RE.finditer(body)][-1:]
    candidates.append(_official_candidate(body) if body.strip() else official)
    tokens = body.replace("\n", " ").split()
    for cand in candidates:
        if not cand or (len(tokens) > 1 and _wordlike(cand)):  # e.g. "I think ...": RDKit reads iodine
            continue
        got = _first_valid(cand)
        if got:
            return got
    for tok in reversed(tokens):
        if _wordlike(tok):
            continue
        got = _first_valid(tok)
        if got:
            return got
    return official or None


# ---- constraint reading

_COUNT_RE = re.compile(r"(\d+)\s+([A-Za-z][A-Za-z ]*?)\s+(?:atoms?|bonds?|groups?)\b", re.I)


def _int(v: Any) -> int:
    return int(round(float(str(v).strip())))


def _counts_from_instruction(instruction: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for n, name in _COUNT_RE.findall(instruction or ""):
        name = re.sub(r"^(?:of|with|and|consisting|composed)\s+", "", name.strip().casefold())
        out[name] = int(n)
    return out


def _subtask(ctx: Mapping[str, Any]) -> str | None:
    raw = str(ctx.get("subtask") or ctx.get("SubTask") or "").strip()
    if raw in TOMG_SUBTASKS:
        return raw
    return _SUB_BY_SHORT.get(raw.split("/")[-1].casefold())


def _targets(ctx: Mapping[str, Any], names: Sequence[str], key=lambda n: n) -> dict[str, int] | None:
    """Target counts from the row's columns, else from its Instruction; None when neither is there."""
    cols = {re.sub(r"[\s_]+", " ", str(k).strip().casefold()): v for k, v in ctx.items()}
    if any(n in cols or n + "s" in cols for n in names):
        out = {}
        for n in names:
            v = cols.get(n, cols.get(n + "s"))
            out[n] = _int(v) if v not in (None, "") else 0
        return out
    if ctx.get("Instruction"):
        parsed = {key(k): v for k, v in _counts_from_instruction(str(ctx["Instruction"])).items()}
        return {n: parsed.get(n, 0) for n in names}
    return None


def _fg_key_for_text(name: str) -> str:
    return _group_key(name) or name


def _check_custom(sub: str, smi: str, ctx: Mapping[str, Any]) -> tuple[bool, dict]:
    if sub == "MolCustom/AtomNum":
        want = _targets(ctx, list(ELEMENTS))
        if want is None:
            raise KeyError("no element counts in the context")
        got = atom_counts(smi)
        checked = list(ELEMENTS)
    elif sub == "MolCustom/BondNum":
        want = _targets(ctx, list(BOND_TYPES))
        if want is None:
            raise KeyError("no bond counts in the context")
        got = bond_counts(smi)
        checked = [b for b in BOND_TYPES if want[b] != 0]
    else:
        names = [g.replace("_", " ") for g in _GROUP_SMARTS]
        raw = _targets(ctx, names, key=lambda n: _fg_key_for_text(n).replace("_", " "))
        if raw is None:
            raise KeyError("no functional-group counts in the context")
        want = {g: raw[g.replace("_", " ")] for g in _GROUP_SMARTS}
        got = {g: group_count(smi, g) for g in _GROUP_SMARTS}
        checked = list(FG_CHECKED)
    failed = [k for k in checked if got[k] != want[k]]
    shown = [k for k in want if want[k] or got[k]]
    info = {"want": {k: want[k] for k in shown}, "got": {k: got[k] for k in shown}, "failed": failed}
    if sub == "MolCustom/BondNum":
        info["checked"] = checked
    return not failed, info


def _source(ctx: Mapping[str, Any]) -> str:
    src = str(ctx.get("molecule") or "").strip()
    if not src and ctx.get("Instruction"):
        for tok in str(ctx["Instruction"]).split():
            v = _first_valid(tok)
            if v and len(v) > 2:
                src = v
                break
    if _mol(src) is None:
        raise KeyError("no valid source molecule in the context")
    return src


_GROUP_ALTERNATIVES = "|".join(sorted((g.replace("_", "[ _]") for g in _GROUP_SMARTS), key=len, reverse=True))
_GROUP_NAME_RE = re.compile(r"(?<![A-Za-z])(" + _GROUP_ALTERNATIVES + r")s?(?![A-Za-z])", re.I)


def _groups_in_instruction(instruction: str, molecule: str) -> list[str]:
    """Group names in an edit instruction, in order (the removed group comes first in every template)."""
    text = instruction.replace(molecule, " ") if molecule else instruction
    return [k for k in (_group_key(m.group(1)) for m in _GROUP_NAME_RE.finditer(text)) if k]


def _check_edit(sub: str, smi: str, ctx: Mapping[str, Any]) -> tuple[bool, dict]:
    src = _source(ctx)
    changes: list[tuple[str, int]] = []  # (group, wanted change); all must hold
    named = _groups_in_instruction(str(ctx.get("Instruction") or ""), src)
    fallback = {"MolEdit/AddComponent": {"added_group": named[:1]},
                "MolEdit/DelComponent": {"removed_group": named[:1]},
                "MolEdit/SubComponent": {"removed_group": named[:1], "added_group": named[1:2]}}[sub]
    for column, delta, needed in (("removed_group", -1, ("MolEdit/DelComponent", "MolEdit/SubComponent")),
                                  ("added_group", +1, ("MolEdit/AddComponent", "MolEdit/SubComponent"))):
        if sub in needed:
            g = _group_key(ctx.get(column) or "") if ctx.get(column) else (fallback.get(column) or [None])[0]
            if g is None:
                raise KeyError(f"unknown or missing {column} {ctx.get(column)!r}")
            changes.append((g, delta))
    checks = [{"group": g, "source": group_count(src, g), "output": group_count(smi, g), "change_wanted": d}
              for g, d in changes]
    ok = all(c["output"] == c["source"] + c["change_wanted"] for c in checks)
    return ok, {"groups": checks, "similarity": round(_tanimoto(src, smi), 4)}


def _check_opt(sub: str, smi: str, ctx: Mapping[str, Any]) -> tuple[bool, dict]:
    src = _source(ctx)
    instruction = str(ctx.get("Instruction") or "")
    if not instruction:
        raise KeyError("no Instruction in the context (the direction is read from it)")
    lower = "lower" in instruction or "decrease" in instruction
    prop = _PROPERTY[sub]
    before, after = mol_property(src, prop), mol_property(smi, prop)
    ok = after < before if lower else after > before
    return ok, {"property": prop, "direction": "lower" if lower else "higher", "source": round(before, 4),
                "output": round(after, 4), "similarity": round(_tanimoto(src, smi), 4)}


def tomg_check(subtask: str, smiles: str | None, context: Mapping[str, Any]) -> tuple[bool, dict]:
    """(success, detail) of one answer SMILES for one TOMG-Bench item."""
    sub = _subtask({"subtask": subtask}) or subtask
    detail: dict[str, Any] = {"subtask": sub, "smiles": smiles, "valid": is_valid_smiles(smiles)}
    if sub not in TOMG_SUBTASKS:
        detail["error"] = f"unknown sub-task {subtask!r}"
        return False, detail
    if not detail["valid"]:
        return False, detail
    try:
        if sub.startswith("MolCustom/"):
            ok, info = _check_custom(sub, smiles, context)
        elif sub.startswith("MolEdit/"):
            ok, info = _check_edit(sub, smiles, context)
        else:
            ok, info = _check_opt(sub, smiles, context)
    except (KeyError, ValueError) as e:
        detail["error"] = str(e.args[0] if e.args else e)
        return False, detail
    detail.update(info)
    return bool(ok), detail


def _tomg_compute(preds, refs, labels, options, judge, contexts) -> Scored:
    lenient = str(options.get("extraction", "lenient")).casefold() != "official"
    per: list[float] = []
    details: list[dict] = []
    by_sub: dict[str, list[float]] = {}
    for pred, ctx in zip(preds, contexts):
        ctx = ctx if isinstance(ctx, Mapping) else {}
        sub = _subtask(ctx) or str(ctx.get("subtask") or ctx.get("SubTask") or "?")
        smi = extract_smiles(pred, lenient=lenient)
        ok, detail = tomg_check(sub, smi, ctx)
        per.append(1.0 if ok else 0.0)
        detail["success"] = ok
        details.append(detail)
        by_sub.setdefault(sub, []).append(per[-1])
    rates = [sum(v) / len(v) for v in by_sub.values()]
    return Scored(sum(rates) / len(rates) if rates else 0.0, per, details)


TOMG_BENCH = Metric("tomg_bench", _tomg_compute, options={"extraction": "lenient"}, context=True)


# --------------------------------------------------------------------------------------------------
# oMeBench

OMES_TAU = 0.60
_GAP_PENALTY = 1e-6
# Official (type -> subtypes) of the oMeBench prompt; a type with one subtype stands for it.
_OFFICIAL_SUBTYPES = {
    "addition": ("nucleophilic_addition", "electrophilic_addition", "radical_addition", "oxidative_addition"),
    "elimination": ("proton_elimination", "leaving_group_elimination", "radical_elimination", "reductive_elimination"),
    "substitution": ("nucleophilic_substitution", "electrophilic_substitution", "radical_substitution"),
    "rearrangement": ("1,2-shift", "radical_rearrangement", "migratory_insertion"),
    "proton_transfer": ("acid_base_proton_transfer",),
    "electron_transfer": ("single_electron_transfer",),
    "radical": ("radical_initiation", "radical_propagation", "radical_termination", "radical_coupling"),
    "pericyclic": ("cycloaddition", "cycloreversion", "electrocyclization", "sigmatropic_rearrangement",
                   "group_transfer", "ene_reaction", "cheletropic_reaction"),
    "cleavage": ("heterolytic_cleavage", "homolytic_cleavage"),
    "coordination": ("coordination",),
    "dissociation": ("dissociation",),
}


def _norm_label(s: Any) -> str:
    return re.sub(r"[\s_]+", "_", str(s or "").strip().casefold()).strip("_")


def format_mechanism(mechanism: Sequence[Mapping[str, Any]]) -> str:
    """One line per step: '<n>. <type> (<subtype>): <intermediate SMILES>' (see the module docstring)."""
    lines = []
    for i, step in enumerate(mechanism, 1):
        typ = str(step.get("type") or "").strip()
        sub = str(step.get("subtype") or "").strip()
        label = f"{typ} ({sub})" if typ and sub else (typ or sub)
        smi = str(step.get("intermediate_smiles") or step.get("intermediate") or "").strip()
        lines.append(f"{i}. {label}: {smi}".rstrip())
    return "\n".join(lines)


_LINE_RE = re.compile(
    r"^\s*(?:[-*\u2022]\s*)?(?:\*\*)?\s*(?:step\s*)?(\d{1,3})\s*[.):\]]?\s*(?:\*\*)?\s*"
    r"(?P<label>[A-Za-z0-9][^:]*?)\s*(?:\*\*)?\s*:\s*(?P<smi>.*)$", re.I)
_LABEL_RE = re.compile(r"^(?P<type>[^()]*?)\s*(?:\((?P<sub>[^()]*)\))?\s*$")
_JSON_LIST_RE = re.compile(r"\[\s*\{.*\}\s*\]", re.S)


def _smiles_token(s: str) -> str:
    """The first token, as is when it parses, else without quotes/backticks/** and , ; . at its ends."""
    parts = s.strip().split()
    if not parts:
        return ""
    tok = parts[0]
    if _mol(tok) is not None:
        return tok
    for v in (tok.strip("`'\",;"), tok.strip("`'\",;."), tok.strip("`'\"*,;."), tok.strip("`'\"*,;")):
        if _mol(v) is not None:
            return v
    return tok.strip("`'\",;")


def _from_json(text: str) -> list[dict] | None:
    m = _JSON_LIST_RE.search(text)
    if not m:
        return None
    try:
        items = json.loads(m.group())
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(items, list) or not items or not all(isinstance(x, dict) for x in items):
        return None
    out = []
    for i, x in enumerate(items, 1):
        smi = x.get("intermediate_smiles", x.get("intermediate", ""))
        out.append({"step": i, "type": str(x.get("type") or "").strip(), "subtype": str(x.get("subtype") or "").strip(),
                    "intermediate_smiles": str(smi or "").strip()})
    return out


def parse_mechanism(text: str | None) -> list[dict]:
    """The steps of a model output, [{'step', 'type', 'subtype', 'intermediate_smiles'}], in order; lines
    that are not steps are ignored. 'subtype' is '' when the line gives a type only."""
    if not text:
        return []
    text = str(text)
    as_json = _from_json(text)
    if as_json is not None:
        return as_json
    steps = []
    for line in text.splitlines():
        m = _LINE_RE.match(line)
        if not m:
            continue
        lm = _LABEL_RE.match(m.group("label").strip())
        if not lm:
            continue
        typ, sub = lm.group("type").strip(), (lm.group("sub") or "").strip()
        if not typ:
            continue
        steps.append({"step": len(steps) + 1, "type": typ, "subtype": sub,
                      "intermediate_smiles": _smiles_token(m.group("smi"))})
    return steps


def _step_label(step: Mapping[str, Any]) -> str:
    """The label steps are compared on: the subtype; without one, the type (or its only official subtype)."""
    sub = _norm_label(step.get("subtype"))
    if sub:
        return sub
    typ = _norm_label(step.get("type"))
    only = _OFFICIAL_SUBTYPES.get(typ)
    return only[0] if only and len(only) == 1 else typ


def _gold_steps(mechanism: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, float]]:
    n = len(mechanism)
    raw = [s.get("step_weight") for s in mechanism]
    try:
        ws = [float(w) for w in raw] if raw and all(w is not None for w in raw) else None
    except (TypeError, ValueError):
        ws = None
    total = sum(ws) if ws else 0.0
    if not ws or total <= 0:
        ws = [1.0 / n] * n if n else []
    elif abs(total - 1.0) > 1e-6:
        ws = [w / total for w in ws]
    return [(_step_label(s),
             str(s.get("intermediate_smiles") or s.get("intermediate") or ""), w) for s, w in zip(mechanism, ws)]


def omes(gold: Sequence[tuple[str, str, float]], pred: Sequence[tuple[str, str]], tau: float = OMES_TAU) -> dict:
    """oMeS of one reaction: gold steps (label, SMILES, weight), predicted steps (label, SMILES).
    Returns S_total, S_partial, V, L (rounded to 2 decimals, as officially) and the alignment."""
    n, m = len(gold), len(pred)
    gcan = [_canonical(s) for _, s, _ in gold]
    pcan = [_canonical(s) for _, s in pred]
    # cell: (S_total, S_partial, penalty); move: the action that reached it
    tot = [[0.0] * (m + 1) for _ in range(n + 1)]
    par = [[0.0] * (m + 1) for _ in range(n + 1)]
    pen = [[0.0] * (m + 1) for _ in range(n + 1)]
    move: list[list[str | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        pen[i][0], move[i][0] = pen[i - 1][0] - _GAP_PENALTY, "skip_gold"
    for j in range(1, m + 1):
        pen[0][j], move[0][j] = pen[0][j - 1] - _GAP_PENALTY, "skip_pred"
    priority = {"match": 3, "type_mismatch": 2, "skip_gold": 1, "skip_pred": 1}
    for i in range(1, n + 1):
        g_label, g_smi, w = gold[i - 1]
        for j in range(1, m + 1):
            p_label, p_smi = pred[j - 1]
            if g_label == p_label:
                d_tot = w if (gcan[i - 1] and gcan[i - 1] == pcan[j - 1]) else 0.0
                if gcan[i - 1] and pcan[j - 1]:
                    sim = _tanimoto(g_smi, p_smi)
                    d_par = w * (sim if sim >= tau else 0.0)
                else:
                    d_par = 0.0
                diag, d_pen = "match", 0.0
            else:
                d_tot = d_par = 0.0
                diag, d_pen = "type_mismatch", -_GAP_PENALTY
            options = [
                (tot[i - 1][j], par[i - 1][j], pen[i - 1][j] - _GAP_PENALTY, "skip_gold"),
                (tot[i][j - 1], par[i][j - 1], pen[i][j - 1] - _GAP_PENALTY, "skip_pred"),
                (tot[i - 1][j - 1] + d_tot, par[i - 1][j - 1] + d_par, pen[i - 1][j - 1] + d_pen, diag),
            ]
            best = options[0]
            for cand in options[1:]:  # strictly better only: ties keep the earlier option
                if (cand[0], cand[1], priority[cand[3]], cand[2]) > (best[0], best[1], priority[best[3]], best[2]):
                    best = cand
            tot[i][j], par[i][j], pen[i][j], move[i][j] = best
    align: list[str] = []
    i, j = n, m
    while i > 0 or j > 0:
        act = move[i][j] if (i > 0 and j > 0) else ("skip_pred" if i == 0 else "skip_gold")
        align.append(act)
        if act in ("match", "type_mismatch"):
            i, j = i - 1, j - 1
        elif act == "skip_gold":
            i -= 1
        else:
            j -= 1
    align.reverse()
    valid = sum(1 for c in pcan if c) / max(1, m)
    logic = sum(1 for a in align if a == "match") / max(1, n)
    return {"S_total": round(tot[n][m], 2), "S_partial": round(par[n][m], 2), "V": round(valid, 2),
            "L": round(logic, 2), "alignment": align}


def omebench_score(pred_text: str, gold_mechanism: Sequence[Mapping[str, Any]], tau: float = OMES_TAU) -> dict:
    """Parse a model output and score it against one gold mechanism (a record's `mechanism` list)."""
    steps = parse_mechanism(pred_text)
    res = omes(_gold_steps(gold_mechanism), [(_step_label(s), s["intermediate_smiles"]) for s in steps], tau)
    res["n_gold"], res["n_pred"] = len(gold_mechanism), len(steps)
    return res


def _omebench_compute(preds, refs, labels, options, judge, contexts) -> Scored:
    main = str(options.get("main", "S_partial"))
    if main not in ("S_total", "S_partial", "V", "L"):
        raise ValueError(f"omebench: option main must be S_total, S_partial, V or L, got {main!r}")
    per, details = [], []
    for pred, ref, ctx in zip(preds, refs, contexts):
        mech = ctx.get("mechanism") if isinstance(ctx, Mapping) else None
        if not mech:
            mech = parse_mechanism(ref)
        res = omebench_score(pred, mech)
        if isinstance(ctx, Mapping) and ctx.get("reaction_id"):
            res["reaction_id"] = ctx["reaction_id"]
        per.append(float(res[main]))
        details.append(res)
    return Scored(sum(per) / len(per) if per else 0.0, per, details)


OMEBENCH = Metric("omebench", _omebench_compute, options={"main": "S_partial"}, context=True)

METRICS = [TOMG_BENCH, OMEBENCH]
