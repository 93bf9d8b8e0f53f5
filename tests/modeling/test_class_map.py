"""A teacher of a wider label space: the class map against hand computations, and its
refusals."""
import pytest
import torch

from kd_det.modeling.class_map import ClassMap, resolve_class_map

TEACHER = ["person", "fish", "car", "shark", "jellyfish"]  # 5 classes + background


def test_by_name_follows_the_student_order():
    m = resolve_class_map("by_name", ["shark", "fish"], TEACHER, 2, 5)
    assert m.teacher_index == (3, 1) and not m.is_identity()
    assert resolve_class_map("by_name", TEACHER, TEACHER, 5, 5).is_identity()


def test_folding_moves_every_unmapped_class_into_background():
    m = ClassMap((3, 1), 5)  # student: shark, fish
    probs = torch.tensor([[0.1, 0.2, 0.05, 0.4, 0.15, 0.1]])
    folded = m.fold_probs(probs)
    # shark 0.4, fish 0.2, background 0.1 + person 0.1 + car 0.05 + jellyfish 0.15
    assert torch.allclose(folded, torch.tensor([[0.4, 0.2, 0.4]]))
    assert torch.allclose(folded.sum(1), torch.ones(1))


def test_a_missing_class_gets_no_mass_and_is_left_out():
    m = resolve_class_map([1, -1], ["fish", "penguin"], TEACHER, 2, 5, allow_missing=True)
    probs = torch.tensor([[0.1, 0.2, 0.05, 0.4, 0.15, 0.1]])
    folded = m.fold_probs(probs)
    assert torch.allclose(folded, torch.tensor([[0.2, 0.0, 0.8]]))
    assert m.present().tolist() == [True, False, True]
    assert "not in the teacher (left out of the soft loss): penguin" in m.describe(
        ["fish", "penguin"], TEACHER)


def test_the_regression_reads_the_mapped_class():
    m = ClassMap((3, 1), 5)
    # student classes shark, fish, background (2) -> teacher 3, 1, none
    assert m.teacher_classes(torch.tensor([0, 1, 2, 0])).tolist() == [3, 1, -1, 3]


def test_the_log_names_mapped_and_folded_classes():
    text = ClassMap((3, 1), 5).describe(["shark", "fish"], TEACHER)
    assert text == ("mapped shark <- shark, fish <- fish; folded into background: person, "
                    "car, jellyfish")


@pytest.mark.parametrize("spec,names,allow,match", [
    ("by_name", ["fish", "penguin"], False, "'penguin' is not among .*ALLOW_MISSING_CLASSES"),
    ("by_name", ["fsh"], False, "did you mean 'fish'"),
    ("by_nmae", ["fish"], False, "give 'by_name' or a list"),
    ([1], ["fish", "shark"], False, "1 indices for 2 student classes"),
    ([1, 7], ["fish", "shark"], False, r"indices \[7\] outside the teacher's 0..4"),
    ([1, -1], ["fish", "shark"], False, r"\['shark'\] have no teacher class"),
    ([1, 1], ["fish", "shark"], False, r"teacher classes \[1\] are mapped to two"),
])
def test_refusals_name_the_key_and_the_fix(spec, names, allow, match):
    with pytest.raises(ValueError, match=match):
        resolve_class_map(spec, names, TEACHER, len(names), 5, allow)


def test_by_name_needs_the_class_names():
    with pytest.raises(ValueError, match="needs the class names"):
        resolve_class_map("by_name", None, TEACHER, 2, 5)
