"""TOMG-Bench and oMeBench metrics (ftbench/metrics/molecules.py): hand-computed cases per sub-task
family, answer extraction, and oMeS on real Gold records. Fast: RDKit only, no Ray, no network."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("rdkit")

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("FTBENCH_DATA", REPO.parent / "shared" / "ftbench_data"))

try:
    from ftbench.metrics import molecules as M
except ImportError:  # a sibling module of ftbench.metrics is not there yet: load this one on its own
    _spec = importlib.util.spec_from_file_location("ftbench_metrics_molecules", REPO / "ftbench" / "metrics" / "molecules.py")
    M = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = M
    _spec.loader.exec_module(M)

from trex_ray import metrics as tm  # noqa: E402

TOMG = DATA / "tomg_bench" / "data"
OME = DATA / "omebench" / "data"
needs_tomg = pytest.mark.skipif(not (TOMG / "OpenMolIns" / "light" / "train.csv").is_file(), reason="TOMG-Bench data absent")
needs_ome = pytest.mark.skipif(not (OME / "oMe_Gold.json").is_file(), reason="oMeBench data absent")


def tomg(preds, contexts, **options):
    opts = {**TOMG_DEFAULTS, **options}
    return M.TOMG_BENCH.compute(list(preds), [""] * len(preds), None, opts, None, list(contexts))


TOMG_DEFAULTS = dict(M.TOMG_BENCH.options)


def atom_ctx(**counts):
    return {"subtask": "MolCustom/AtomNum", **{e: str(counts.get(e, 0)) for e in M.ELEMENTS}}


def bond_ctx(**counts):
    return {"subtask": "MolCustom/BondNum", **{b: str(counts.get(b, 0)) for b in M.BOND_TYPES}}


FG_COLUMNS = ["benzene rings", "hydroxyl", "anhydride", "aldehyde", "ketone", "carboxyl", "ester", "amide", "amine",
              "nitro", "halo", "thioether", "nitrile", "thiol", "sulfide", "disulfide", "sulfoxide", "sulfone", "borane"]


def fg_ctx(**counts):
    return {"subtask": "MolCustom/FunctionalGroup", **{c: str(counts.get(c.replace(" ", "_"), 0)) for c in FG_COLUMNS}}


# --------------------------------------------------------------------------------------------------
# TOMG-Bench: MolCustom

def test_atomnum_counts_every_listed_element():
    ctx = atom_ctx(carbon=2, oxygen=1)
    assert tomg(["CCO"], [ctx]).per_example == [1.0]
    assert tomg(["OCC"], [ctx]).per_example == [1.0]             # any SMILES of ethanol
    assert tomg(["CCCO"], [ctx]).per_example == [0.0]            # 3 carbons
    assert tomg(["ClCCO"], [ctx]).per_example == [0.0]           # an element that must be absent
    d = tomg(["ClCCO"], [ctx]).details[0]
    assert d["failed"] == ["chlorine"] and d["valid"] is True


def test_bondnum_checks_nonzero_targets_only():
    # C=CC#N: C1=C2 double, C2-C3 single, C3#N triple; no rotatable bond
    assert tomg(["C=CC#N"], [bond_ctx(single=1, double=1, triple=1)]).per_example == [1.0]
    assert tomg(["C=CC#N"], [bond_ctx(single=2, double=1, triple=1)]).per_example == [0.0]
    # toluene: 1 single + 6 aromatic bonds; the zero single-bond target is not checked
    assert tomg(["Cc1ccccc1"], [bond_ctx(aromatic=6)]).per_example == [1.0]
    assert tomg(["Cc1ccccc1"], [bond_ctx(aromatic=5)]).per_example == [0.0]
    assert tomg(["C1=CC=CC=C1"], [bond_ctx(aromatic=6)]).per_example == [1.0]  # Kekulé benzene is aromatised
    # butane: 3 single bonds, only the middle one is rotatable
    assert tomg(["CCCC"], [bond_ctx(single=3, rotatable=1)]).per_example == [1.0]
    assert tomg(["CCCC"], [bond_ctx(single=3, rotatable=3)]).per_example == [0.0]


def test_functional_group_exact_counts():
    assert tomg(["OCCO"], [fg_ctx(hydroxyl=2)]).per_example == [1.0]
    assert tomg(["OCCO"], [fg_ctx(hydroxyl=1)]).per_example == [0.0]
    assert tomg(["Oc1ccccc1"], [fg_ctx(benzene_rings=1, hydroxyl=1)]).per_example == [1.0]
    assert tomg(["Oc1ccccc1"], [fg_ctx(hydroxyl=1)]).per_example == [0.0]     # a benzene ring that must be absent
    # acetic acid: its OH is also a hydroxyl ([OX2H]); not a ketone, ester or aldehyde
    assert tomg(["CC(=O)O"], [fg_ctx(carboxyl=1, hydroxyl=1)]).per_example == [1.0]
    assert tomg(["CC(=O)O"], [fg_ctx(carboxyl=1)]).per_example == [0.0]
    # the charged nitro form counts (the successor SMARTS the data was built with)
    assert M.group_count("C[N+](=O)[O-]", "nitro") == 1 and M.group_count("CN(=O)=O", "nitro") == 1
    # thioether is in the file but not checked officially: dimethyl sulfide is 1 sulfide (2 thioether matches)
    assert M.group_count("CSC", "thioether") == 2
    assert tomg(["CSC"], [fg_ctx(sulfide=1, thioether=2)]).per_example == [1.0]
    assert tomg(["CSC"], [fg_ctx(sulfide=1)]).per_example == [1.0]
    assert tomg(["CSC"], [fg_ctx(sulfide=2)]).per_example == [0.0]


def test_custom_counts_read_from_instruction_when_columns_absent():
    ctx = {"subtask": "AtomNum", "Instruction": "Please generate a molecule with 2 carbon atoms, and 1 oxygen atom."}
    assert tomg(["CCO", "CCN"], [ctx, ctx]).per_example == [1.0, 0.0]
    ctx = {"subtask": "FunctionalGroup", "Instruction": "The molecule has 1 benzene ring group, and 1 hydroxyl group."}
    assert tomg(["Oc1ccccc1", "OCc1ccccc1O"], [ctx, ctx]).per_example == [1.0, 0.0]


# --------------------------------------------------------------------------------------------------
# TOMG-Bench: MolEdit and MolOpt

def edit_ctx(sub, molecule, **groups):
    return {"subtask": f"MolEdit/{sub}", "Instruction": "edit", "molecule": molecule, **groups}


def test_add_delete_substitute_group():
    add = edit_ctx("AddComponent", "CCO", added_group="hydroxyl")
    assert tomg(["OCCO", "CCO", "OCC(O)O"], [add] * 3).per_example == [1.0, 0.0, 0.0]   # exactly one more
    add_ring = edit_ctx("AddComponent", "CCO", added_group="benzene ring")            # the test files' spelling
    assert tomg(["OCCc1ccccc1"], [add_ring]).per_example == [1.0]
    dele = edit_ctx("DelComponent", "OCCO", removed_group="hydroxyl")
    assert tomg(["CCO", "CC", "OCCO"], [dele] * 3).per_example == [1.0, 0.0, 0.0]
    dele_ring = edit_ctx("DelComponent", "Cc1ccccc1", removed_group="benzene_ring")
    assert tomg(["C"], [dele_ring]).per_example == [1.0]
    sub = edit_ctx("SubComponent", "CCO", removed_group="hydroxyl", added_group="halo")
    # CCCl: hydroxyl 1 -> 0 and halo 0 -> 1; CC: no halo added; ClCCO: hydroxyl kept
    assert tomg(["CCCl", "CC", "ClCCO"], [sub] * 3).per_example == [1.0, 0.0, 0.0]
    d = tomg(["CCCl"], [sub]).details[0]
    assert [(g["group"], g["source"], g["output"]) for g in d["groups"]] == [("hydroxyl", 1, 0), ("halo", 0, 1)]
    assert 0.0 <= d["similarity"] <= 1.0


def test_edit_groups_read_from_instruction():
    ctx = {"subtask": "SubComponent", "Instruction": "Replace a hydroxyl in the molecule CCO by halo."}
    assert tomg(["CCCl", "CCO"], [ctx, ctx]).per_example == [1.0, 0.0]


def test_property_direction():
    up = {"subtask": "MolOpt/LogP", "molecule": "CCO",
          "Instruction": "Please optimize the molecule CCO to have a higher LogP value."}
    down = {**up, "Instruction": "Modify the molecule CCO to decrease its LogP value."}
    # logP(CCCC) > logP(CCO) > logP(OCCO): an extra carbon raises Crippen logP, an extra OH lowers it
    assert tomg(["CCCC", "OCCO"], [up, up]).per_example == [1.0, 0.0]
    assert tomg(["CCCC", "OCCO"], [down, down]).per_example == [0.0, 1.0]
    mr_up = {"subtask": "MolOpt/MR", "molecule": "CCO", "Instruction": "Modify the molecule CCO to increase its MR value."}
    assert tomg(["CCCO", "CO"], [mr_up, mr_up]).per_example == [1.0, 0.0]
    # the property must move strictly: the unchanged molecule fails both ways
    q_up = {"subtask": "MolOpt/QED", "molecule": "CCO", "Instruction": "Make its QED higher."}
    q_down = {**q_up, "Instruction": "Make its QED lower."}
    assert tomg(["OCC", "OCC"], [q_up, q_down]).per_example == [0.0, 0.0]
    d = tomg(["CCCC"], [up]).details[0]
    assert d["direction"] == "higher" and d["output"] > d["source"]


# --------------------------------------------------------------------------------------------------
# TOMG-Bench: validity, extraction, aggregation

def test_invalid_or_empty_answer_fails():
    ctx = atom_ctx(carbon=2, oxygen=1)
    s = tomg(["C1CC", "", "CC(O", "not a molecule"], [ctx] * 4)
    assert s.per_example == [0.0] * 4 and s.score == 0.0
    assert [d["valid"] for d in s.details] == [False] * 4
    assert s.details[0]["smiles"] == "C1CC"                      # unclosed ring: extracted, invalid
    edit = edit_ctx("DelComponent", "OCCO", removed_group="hydroxyl")
    assert tomg([""], [edit]).per_example == [0.0]               # officially "" parses to 0 atoms: invalid here


@pytest.mark.parametrize("text,expected", [
    ("CCO", "CCO"),
    ("  CC(=O)O\n", "CC(=O)O"),
    ('{"molecule": "CC(=O)O"}', "CC(=O)O"),
    ("Here you go: {'molecule': 'c1ccccc1O'}", "c1ccccc1O"),
    ("CCO -> CCCO", "CCCO"),
    ("The final answer is \\boxed{CCN}.", "CCN"),
    ("Molecule: CC(C)O\nThis adds a methyl group.", "CC(C)O"),
    ("Sure! The molecule you asked for is CCO. Hope this helps.", "CCO"),
    ("<think>maybe CCCl</think>SMILES: `CCBr`", "CCBr"),
    ("I think `c1ccncc1` works", "c1ccncc1"),
])
def test_extract_smiles(text, expected):
    assert M.extract_smiles(text) == expected


def test_extract_smiles_none_and_official_mode():
    assert M.extract_smiles("") is None and M.extract_smiles(None) is None
    assert M.extract_smiles("no molecule here") is not None  # the official candidate is returned, invalid
    assert not M.is_valid_smiles(M.extract_smiles("no molecule here"))
    chatty = "The answer is CCO"
    ctx = atom_ctx(carbon=2, oxygen=1)
    assert tomg([chatty], [ctx]).per_example == [1.0]
    assert tomg([chatty], [ctx], extraction="official").per_example == [0.0]   # RDKit reads "The"
    assert tomg(["CCO is ethanol"], [ctx], extraction="official").per_example == [1.0]  # first token


def test_score_is_mean_of_subtask_success_rates():
    atom = atom_ctx(carbon=2, oxygen=1)
    logp = {"subtask": "MolOpt/LogP", "molecule": "CCO", "Instruction": "to have a higher LogP value."}
    s = tomg(["CCO", "CCO", "CCN", "CCCC"], [atom, atom, atom, logp])
    assert s.per_example == [1.0, 1.0, 0.0, 1.0]
    assert s.score == pytest.approx((2 / 3 + 1.0) / 2)            # not the pooled 3/4


def test_missing_constraints_is_an_error_not_a_crash():
    s = tomg(["CCO", "CCO", "CCO"], [{"subtask": "MolCustom/AtomNum"}, {"subtask": "MolEdit/AddComponent"},
                                     {"subtask": "Nope"}])
    assert s.per_example == [0.0, 0.0, 0.0]
    assert all(d.get("error") for d in s.details)


def test_registered_through_trex_ray_score(monkeypatch):
    for m in M.METRICS:
        monkeypatch.setitem(tm.METRICS, m.name, m)
        monkeypatch.setitem(tm.METRIC_BEST, m.name, m.best)
    s = tm.score("tomg_bench", ["CCO"], [""], contexts=[atom_ctx(carbon=2, oxygen=1)])
    assert s.score == 1.0
    with pytest.raises(ValueError):
        tm.score("tomg_bench", ["CCO"], [""])                    # contexts are required
    mech = [{"type": "proton_transfer", "subtype": "acid_base_proton_transfer", "intermediate_smiles": "CC[O-]"}]
    s = tm.score("omebench", [M.format_mechanism(mech)], [M.format_mechanism(mech)], contexts=[{"mechanism": mech}],
                 options={"main": "S_total"})
    assert s.score == 1.0
    assert {m.name for m in M.METRICS} == {"tomg_bench", "omebench"}


@needs_tomg
def test_real_data_counts_columns_match_instructions():
    """The count columns of the MolCustom test files and the counts read from their instructions agree."""
    for sub, names in [("AtomNum", list(M.ELEMENTS)), ("BondNum", list(M.BOND_TYPES))]:
        with open(TOMG / "benchmarks" / "open_generation" / "MolCustom" / sub / "test.csv", newline="") as f:
            rows = [r for _, r in zip(range(200), csv.DictReader(f))]
        for r in rows:
            from_cols = M._targets(r, names)
            from_text = M._targets({"Instruction": r["Instruction"]}, names)
            assert from_cols == from_text, r["Instruction"]


@needs_tomg
def test_real_train_answers_pass_their_custom_instructions():
    """OpenMolIns answers were built with the checked definitions: every MolCustom one passes."""
    with open(TOMG / "OpenMolIns" / "light" / "train.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["SubTask"] in ("AtomNum", "BondNum", "FunctionalGroup")]
    rows = rows[::10]
    s = tomg([r["molecule"] for r in rows], [{"subtask": r["SubTask"], "Instruction": r["Instruction"]} for r in rows])
    assert s.per_example == [1.0] * len(rows)


@needs_tomg
def test_real_test_rows_source_molecule_is_not_an_answer():
    """Echoing the source molecule never solves an edit or optimisation item."""
    preds, ctxs = [], []
    for sub in ("MolEdit/AddComponent", "MolEdit/DelComponent", "MolEdit/SubComponent", "MolOpt/LogP", "MolOpt/MR",
                "MolOpt/QED"):
        with open(TOMG / "benchmarks" / "open_generation" / sub / "test.csv", newline="") as f:
            for _, r in zip(range(15), csv.DictReader(f)):
                preds.append(r["molecule"])
                ctxs.append({"subtask": sub, **r})
    s = tomg(preds, ctxs)
    assert s.score == 0.0 and all(d["valid"] and "error" not in d for d in s.details)


# --------------------------------------------------------------------------------------------------
# oMeBench

ALDOL = [  # Gold NR-001 (Base-catalyzed Aldol addition)
    {"step": 1, "type": "proton_transfer", "subtype": "acid_base_proton_transfer", "intermediate_smiles": "[CH2-]C=O",
     "step_weight": 0.22857142857142856},
    {"step": 2, "type": "addition", "subtype": "nucleophilic_addition", "intermediate_smiles": "CC([O-])CC=O",
     "step_weight": 0.6},
    {"step": 3, "type": "proton_transfer", "subtype": "acid_base_proton_transfer", "intermediate_smiles": "CC(O)CC=O",
     "step_weight": 0.1714285714285714},
]


def ome(preds, mechs, **options):
    opts = {**M.OMEBENCH.options, **options}
    refs = [M.format_mechanism(m) for m in mechs]
    return M.OMEBENCH.compute(list(preds), refs, None, opts, None, [{"mechanism": m} for m in mechs])


def test_format_is_one_plain_line_per_step():
    assert M.format_mechanism(ALDOL) == (
        "1. proton_transfer (acid_base_proton_transfer): [CH2-]C=O\n"
        "2. addition (nucleophilic_addition): CC([O-])CC=O\n"
        "3. proton_transfer (acid_base_proton_transfer): CC(O)CC=O")
    assert M.format_mechanism([{"type": "coordination", "subtype": "coordination", "intermediate_smiles": "C"},
                               {"type": "cleavage", "intermediate_smiles": " CC "}]) == \
        "1. coordination (coordination): C\n2. cleavage: CC"


def test_parse_tolerates_junk_and_variants():
    text = ("Here is the mechanism:\n\n"
            "Step 1: proton_transfer (acid_base_proton_transfer): [CH2-]C=O\n"
            "  - 2) addition (nucleophilic_addition): CC([O-])CC=O,\n"
            "The alkoxide is then protonated.\n"
            "**3.** proton_transfer (acid_base_proton_transfer): `CC(O)CC=O`.\n"
            "Overall: done")
    steps = M.parse_mechanism(text)
    assert [(s["type"], s["subtype"], s["intermediate_smiles"]) for s in steps] == [
        (x["type"], x["subtype"], x["intermediate_smiles"]) for x in ALDOL]
    assert ome([text], [ALDOL]).per_example == [1.0]
    assert M.parse_mechanism("") == [] and M.parse_mechanism("no steps at all") == []
    # SMILES with atom maps keep their colons; the label ends at the first colon
    assert M.parse_mechanism("1. addition (nucleophilic_addition): C([*:1])O")[0]["intermediate_smiles"] == "C([*:1])O"


def test_parse_accepts_the_official_json_list():
    text = "[ANSWER]" + json.dumps([{k: v for k, v in s.items() if k != "step_weight"} for s in ALDOL]) + "[/ANSWER]"
    assert ome([text], [ALDOL]).per_example == [1.0]


def test_gold_scores_one_against_itself():
    s = ome([M.format_mechanism(ALDOL)], [ALDOL])
    d = s.details[0]
    assert (d["S_total"], d["S_partial"], d["V"], d["L"]) == (1.0, 1.0, 1.0, 1.0)
    assert d["alignment"] == ["match"] * 3


def test_wrong_step_type_hand_computed():
    wrong = [dict(s) for s in ALDOL]
    wrong[1].update(type="elimination", subtype="leaving_group_elimination")   # right SMILES, wrong subtype
    d = ome([M.format_mechanism(wrong)], [ALDOL]).details[0]
    # steps 1 and 3 match: 0.2286 + 0.1714 = 0.4; the mismatch is aligned diagonally (priority over gaps)
    assert d["alignment"] == ["match", "type_mismatch", "match"]
    assert (d["S_total"], d["S_partial"], d["V"], d["L"]) == (0.4, 0.4, 1.0, 0.67)


def test_missing_step_hand_computed():
    d = ome([M.format_mechanism([ALDOL[0], ALDOL[2]])], [ALDOL]).details[0]
    assert d["alignment"] == ["match", "skip_gold", "match"]
    assert (d["S_total"], d["S_partial"], d["V"], d["L"]) == (0.4, 0.4, 1.0, 0.67)
    assert d["n_gold"] == 3 and d["n_pred"] == 2


def test_invalid_intermediate_and_partial_similarity():
    bad = [dict(s) for s in ALDOL]
    bad[2]["intermediate_smiles"] = "CC(O"                                      # invalid: type still matches
    d = ome([M.format_mechanism(bad)], [ALDOL]).details[0]
    assert (d["S_total"], d["S_partial"], d["V"], d["L"]) == (0.83, 0.83, 0.67, 1.0)

    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)

    def sim(a, b):
        fa, fb = (gen.GetFingerprint(Chem.MolFromSmiles(x)) for x in (a, b))
        return DataStructs.TanimotoSimilarity(fa, fb)

    # step 2 with a stereocentre: another canonical SMILES (no strict credit) but the same Morgan
    # fingerprint (similarity 1, full partial credit); a far-off SMILES (similarity < 0.6) gets none
    for alt, partial in (("C[C@H]([O-])CC=O", 1.0), ("C[O-]", 0.4)):
        near = [dict(s) for s in ALDOL]
        near[1]["intermediate_smiles"] = alt
        d = ome([M.format_mechanism(near)], [ALDOL]).details[0]
        assert (d["S_total"], d["S_partial"], d["V"], d["L"]) == (0.4, partial, 1.0, 1.0)
    assert sim("CC([O-])CC=O", "C[C@H]([O-])CC=O") == 1.0 and sim("CC([O-])CC=O", "C[O-]") < 0.6


def test_type_only_lines_and_empty_output():
    text = "1. proton_transfer: [CH2-]C=O\n2. addition: CC([O-])CC=O\n3. proton_transfer: CC(O)CC=O"
    d = ome([text], [ALDOL]).details[0]
    # proton_transfer has one official subtype; "addition" has four, so step 2 does not match
    assert d["alignment"] == ["match", "type_mismatch", "match"] and d["S_total"] == 0.4
    s = ome(["", "I cannot answer."], [ALDOL, ALDOL])
    assert s.per_example == [0.0, 0.0] and s.details[0]["V"] == 0.0 and s.details[0]["L"] == 0.0


def test_main_option_and_uniform_weights_without_step_weight():
    unweighted = [{k: v for k, v in s.items() if k != "step_weight"} for s in ALDOL]
    d = ome([M.format_mechanism([ALDOL[0], ALDOL[2]])], [unweighted]).details[0]
    assert d["S_total"] == 0.67                                                 # 2 of 3 equal-weight steps
    zero = [{**s, "step_weight": 0} for s in ALDOL]                             # as in the Template file
    assert ome([M.format_mechanism(ALDOL)], [zero]).per_example == [1.0]
    wrong = [dict(s) for s in ALDOL]
    wrong[1].update(type="elimination", subtype="leaving_group_elimination")
    assert ome([M.format_mechanism(wrong)], [ALDOL], main="L").per_example == [0.67]
    assert ome([M.format_mechanism(wrong)], [ALDOL], main="S_total").per_example == [0.4]
    with pytest.raises(ValueError):
        ome(["x"], [ALDOL], main="nope")


def test_reference_text_is_used_without_a_context_mechanism():
    ref = M.format_mechanism(ALDOL)
    s = M.OMEBENCH.compute([ref, ""], [ref, ref], None, dict(M.OMEBENCH.options), None, [{}, {}])
    assert s.per_example == [1.0, 0.0]


@needs_ome
def test_real_gold_round_trip_and_self_score():
    gold = json.loads((OME / "oMe_Gold.json").read_text())
    assert len(gold) == 196
    refs = [M.format_mechanism(r["mechanism"]) for r in gold]
    for r, ref in zip(gold, refs):
        back = M.parse_mechanism(ref)
        assert [(s["type"], s["subtype"], s["intermediate_smiles"]) for s in back] == \
            [(s["type"], s["subtype"], s["intermediate_smiles"].strip()) for s in r["mechanism"]], r["reaction_id"]
    s = M.OMEBENCH.compute(refs, refs, None, dict(M.OMEBENCH.options), None, gold)
    assert s.score == 1.0
    assert all((d["S_total"], d["V"], d["L"]) == (1.0, 1.0, 1.0) for d in s.details)
    # dropping the last step of every reaction loses exactly its weight (rounded per reaction)
    cut = [M.format_mechanism(r["mechanism"][:-1]) for r in gold]
    s = M.OMEBENCH.compute(cut, refs, None, {"main": "S_total"}, None, gold)
    expected = [round(sum(st["step_weight"] for st in r["mechanism"][:-1]), 2) for r in gold]
    assert s.per_example == pytest.approx(expected, abs=0.011)


@needs_ome
def test_real_template_records_without_weights():
    tmpl = json.loads((OME / "oMe_Template.json").read_text())
    ok = [r for r in tmpl if all(M.is_valid_smiles(s.get("intermediate_smiles")) for s in r["mechanism"])]
    refs = [M.format_mechanism(r["mechanism"]) for r in ok]
    s = M.OMEBENCH.compute(refs, refs, None, dict(M.OMEBENCH.options), None, ok)
    assert len(ok) > 100 and s.score == 1.0
