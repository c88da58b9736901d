"""Losses: hand-computed values, gradients, masking / ignore behaviour, symmetry, queues."""

import math

import pytest
import torch
import torch.nn.functional as F

from distill.losses import (
    LOSSES,
    EmbeddingQueue,
    build_loss,
    kl_distill,
    l1_region_distill,
    pixel_text_cross_entropy,
    pixel_text_logits,
    pseudo_label_cross_entropy,
    symmetric_infonce,
)
from distill.vocab import dense_cosine_logits

E1, E2 = [1.0, 0.0], [0.0, 1.0]


# ------------------------------------------------------------------------------------ L1 (ViLD)
def test_l1_hand_computed_and_valid_mask():
    student = torch.tensor([E1, E2], requires_grad=True)
    teacher = torch.tensor([E2, E2])
    # region 0: |1-0| + |0-1| = 2; region 1: 0 -> mean 1
    assert l1_region_distill(student, teacher).item() == pytest.approx(1.0)
    assert l1_region_distill(
        student, teacher, valid=torch.tensor([True, False])
    ).item() == pytest.approx(2.0)
    loss = l1_region_distill(student, teacher, valid=torch.tensor([False, True]))
    assert loss.item() == 0.0
    loss = l1_region_distill(student, teacher)
    loss.backward()
    # d/ds mean_i sum_d |s - t| = sign(s - t) / N
    assert torch.allclose(student.grad, torch.tensor([[0.5, -0.5], [0.0, 0.0]]))


def test_l1_no_valid_region_keeps_graph():
    student = torch.randn(3, 4, requires_grad=True)
    loss = l1_region_distill(student, torch.randn(3, 4), valid=torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(student.grad, torch.zeros(3, 4))
    empty = torch.zeros(0, 4, requires_grad=True)
    l1_region_distill(empty, torch.zeros(0, 4)).backward()


def test_l1_does_not_renormalize():
    student, teacher = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    assert l1_region_distill(student, teacher).item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["student", "teacher"])
def test_l1_nan_names_argument(name):
    good, bad = torch.zeros(2, 3), torch.tensor([[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]])
    args = {"student": good, "teacher": good, name: bad}
    with pytest.raises(ValueError, match=name):
        l1_region_distill(args["student"], args["teacher"])


def test_l1_shape_errors():
    with pytest.raises(ValueError, match="teacher shape"):
        l1_region_distill(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="valid"):
        l1_region_distill(
            torch.zeros(2, 3), torch.zeros(2, 3), valid=torch.ones(3, dtype=torch.bool)
        )


# ------------------------------------------------------------------------------- InfoNCE (BARON)
def test_infonce_hand_computed():
    s = 3.0
    a = torch.tensor([E1, E2])
    # logits s*I in both directions: each row CE = log(1 + e^-s)
    assert symmetric_infonce(a, a, temperature=s).item() == pytest.approx(
        math.log1p(math.exp(-s)), rel=1e-5
    )


def test_infonce_matches_explicit_formula():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(5, 8), dim=1), F.normalize(torch.randn(5, 8), dim=1)
    s = 20.0
    la = torch.log_softmax(s * a @ b.t(), dim=1).diag()
    lb = torch.log_softmax(s * b @ a.t(), dim=1).diag()
    expected = -0.5 * la.mean() - 0.5 * lb.mean()
    assert symmetric_infonce(a, b, temperature=s).item() == pytest.approx(expected.item(), rel=1e-5)


def test_infonce_symmetric_in_arguments():
    torch.manual_seed(1)
    a, b = F.normalize(torch.randn(4, 6), dim=1), F.normalize(torch.randn(4, 6), dim=1)
    qa, qb = F.normalize(torch.randn(3, 6), dim=1), F.normalize(torch.randn(7, 6), dim=1)
    ids = torch.tensor([0, 0, 1, 2])
    one = symmetric_infonce(a, b, temperature=10.0, queue_a=qa, queue_b=qb, image_ids=ids)
    two = symmetric_infonce(b, a, temperature=10.0, queue_a=qb, queue_b=qa, image_ids=ids)
    assert one.item() == pytest.approx(two.item(), rel=1e-6)


def test_infonce_same_image_masking():
    s = 2.0
    a = torch.tensor([E1, E2])
    # both rows from image 7: the off-diagonal negatives vanish -> loss exactly 0
    assert symmetric_infonce(
        a, a, temperature=s, image_ids=torch.tensor([7, 7])
    ).item() == pytest.approx(0.0, abs=1e-7)
    # different images: nothing masked
    assert symmetric_infonce(
        a, a, temperature=s, image_ids=torch.tensor([7, 8])
    ).item() == pytest.approx(math.log1p(math.exp(-s)), rel=1e-5)


def test_infonce_queue_entries_are_negatives_even_when_same_image():
    s = 2.0
    a = torch.tensor([E1, E2])
    queue = torch.tensor([E2])
    # a->b: row 0 logits [s, 0 | 0] -> log(1 + 2e^-s); row 1 logits [0, s | s] -> log(2 + e^-s)
    # b->a (no queue_a): log(1 + e^-s) per row
    expected = 0.5 * 0.5 * (
        math.log1p(2 * math.exp(-s)) + math.log(2 + math.exp(-s))
    ) + 0.5 * math.log1p(math.exp(-s))
    got = symmetric_infonce(a, a, temperature=s, queue_b=queue)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # masking by image id removes in-batch pairs, but the queue entry stays a negative
    masked = symmetric_infonce(a, a, temperature=s, queue_b=queue, image_ids=torch.tensor([0, 0]))
    expected_masked = 0.5 * 0.5 * (math.log1p(math.exp(-s)) + math.log(2.0)) + 0.0
    assert masked.item() == pytest.approx(expected_masked, rel=1e-5)
    # an empty queue changes nothing
    assert symmetric_infonce(
        a, a, temperature=s, queue_b=torch.zeros(0, 2)
    ).item() == pytest.approx(math.log1p(math.exp(-s)), rel=1e-5)


def test_infonce_gradients_flow_to_both_sides():
    torch.manual_seed(2)
    a = torch.randn(4, 8, requires_grad=True)
    b = torch.randn(4, 8, requires_grad=True)
    symmetric_infonce(
        F.normalize(a, dim=1),
        F.normalize(b, dim=1),
        temperature=30.0,
        queue_b=F.normalize(torch.randn(5, 8), dim=1),
    ).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_infonce_errors():
    a = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="queue_b"):
        symmetric_infonce(a, a, queue_b=torch.tensor([[float("inf"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="queue_a"):
        symmetric_infonce(a, a, queue_a=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="image_ids"):
        symmetric_infonce(a, a, image_ids=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="^b "):
        symmetric_infonce(a, torch.zeros(3, 3))


# --------------------------------------------------------------------------------- LSeg pixel-text
def _pixels():
    # one image, 1x2 pixels: (2, 0) and (0, 3); normalized -> e1, e2
    return torch.tensor([[[[2.0, 0.0]], [[0.0, 3.0]]]], requires_grad=True)  # [1, 2, 1, 2]


def test_pixel_text_logits_hand_computed():
    logits = pixel_text_logits(_pixels(), torch.tensor([[5.0, 0.0], [0.0, 0.1]]), temperature=0.5)
    assert logits.shape == (1, 2, 1, 2)
    assert torch.allclose(logits[0, :, 0, 0], torch.tensor([2.0, 0.0]))
    assert torch.allclose(logits[0, :, 0, 1], torch.tensor([0.0, 2.0]))


def test_dense_logits_keep_the_bits_of_the_einsums_they_replaced():
    """``pixel_text_logits`` and the toy zero-shot evaluation (``distill.toy.zeroshot``, no
    temperature) compute their logits with ``distill.vocab.dense_cosine_logits``: bit-identical to
    their former einsums."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 16, 5, 7, generator=generator)
    text = torch.randn(6, 16, generator=generator)
    pixel_n, text_n = F.normalize(pixels, dim=1), F.normalize(text, dim=1)
    former = torch.einsum("bdhw,nd->bnhw", pixel_n, text_n)
    assert torch.equal(pixel_text_logits(pixels, text, temperature=0.07), former / 0.07)
    assert torch.equal(
        dense_cosine_logits(pixel_n, text_n, temperature=1.0),
        torch.einsum("bdhw,kd->bkhw", pixel_n, text_n),
    )


def test_pixel_text_cross_entropy_hand_computed_and_ignore():
    text = torch.eye(2)
    target = torch.tensor([[[0, 1]]])
    expected = math.log1p(math.exp(-2.0))  # logits [2, 0] vs label 0 (and symmetric for pixel 1)
    pixels = _pixels()
    loss = pixel_text_cross_entropy(pixels, text, target, temperature=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert pixels.grad.abs().sum() > 0
    # wrong label on pixel 1 but ignored -> only pixel 0 counts
    ignored = pixel_text_cross_entropy(_pixels(), text, torch.tensor([[[0, 255]]]), temperature=0.5)
    assert ignored.item() == pytest.approx(expected, rel=1e-5)
    wrong = pixel_text_cross_entropy(_pixels(), text, torch.tensor([[[0, 0]]]), temperature=0.5)
    assert wrong.item() == pytest.approx(0.5 * (expected + math.log1p(math.exp(2.0))), rel=1e-5)
    pixels = _pixels()
    none = pixel_text_cross_entropy(pixels, text, torch.full((1, 1, 2), 255), temperature=0.5)
    assert none.item() == 0.0
    none.backward()


def test_pixel_text_cross_entropy_errors():
    with pytest.raises(ValueError, match="target contains label 2"):
        pixel_text_cross_entropy(_pixels(), torch.eye(2), torch.tensor([[[0, 2]]]))
    with pytest.raises(ValueError, match="target shape"):
        pixel_text_cross_entropy(_pixels(), torch.eye(2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="text_emb"):
        pixel_text_cross_entropy(
            _pixels(), torch.tensor([[float("nan"), 0.0]]), torch.zeros(1, 1, 2, dtype=torch.long)
        )


# ------------------------------------------------------------------------- pseudo-label CE
def test_pseudo_label_confidence_threshold():
    logits = torch.zeros(1, 3, 1, 3, requires_grad=True)
    logits.data[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])
    pseudo = torch.tensor([[[0, 1, 2]]])
    conf = torch.tensor([[[0.99, 0.5, 0.96]]])
    ce0 = -math.log(math.e / (math.e + 2))  # pixel 0: logits [1, 0, 0], label 0
    ce_uniform = math.log(3.0)  # pixels 1, 2: uniform logits
    assert pseudo_label_cross_entropy(logits, pseudo).item() == pytest.approx(
        (ce0 + 2 * ce_uniform) / 3, rel=1e-5
    )
    kept = pseudo_label_cross_entropy(
        logits, pseudo, confidence=conf, threshold=0.95
    )  # pixel 1 dropped
    assert kept.item() == pytest.approx((ce0 + ce_uniform) / 2, rel=1e-5)
    kept.backward()
    assert logits.grad[0, :, 0, 1].abs().sum() == 0  # ignored pixel gets no gradient
    assert logits.grad[0, :, 0, 0].abs().sum() > 0
    # ignore_index and threshold combine; nothing kept -> 0
    none = pseudo_label_cross_entropy(
        logits, torch.tensor([[[255, 1, 255]]]), confidence=conf, threshold=0.95
    )
    assert none.item() == 0.0


def test_pseudo_label_errors():
    logits = torch.zeros(1, 3, 1, 2)
    with pytest.raises(ValueError, match="confidence"):
        pseudo_label_cross_entropy(logits, torch.zeros(1, 1, 2, dtype=torch.long), threshold=0.9)
    with pytest.raises(ValueError, match="confidence"):
        pseudo_label_cross_entropy(
            logits,
            torch.zeros(1, 1, 2, dtype=torch.long),
            confidence=torch.tensor([[[float("nan"), 1.0]]]),
            threshold=0.9,
        )
    with pytest.raises(ValueError, match="logits"):
        pseudo_label_cross_entropy(
            torch.full((1, 3, 1, 2), float("inf")), torch.zeros(1, 1, 2, dtype=torch.long)
        )


# ------------------------------------------------------------------------------------ KL
def test_kl_hand_computed():
    student = torch.tensor([[0.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # p_t = (0.75, 0.25), p_s = (0.5, 0.5)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kl_distill(student, teacher).item() == pytest.approx(expected, rel=1e-5)
    # T = 2: p_t = softmax(log3 / 2, 0) = (sqrt3, 1) / (sqrt3 + 1); scaled by T^2
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    expected_t2 = 4 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    loss = kl_distill(student, teacher, temperature=2.0)
    assert loss.item() == pytest.approx(expected_t2, rel=1e-5)
    loss.backward()
    assert student.grad.abs().sum() > 0


def test_kl_matches_torch_batchmean_and_dense_dim():
    torch.manual_seed(3)
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    ref = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), reduction="batchmean", log_target=True)
    assert kl_distill(s, t).item() == pytest.approx(ref.item(), rel=1e-5)
    assert kl_distill(t, t).item() == pytest.approx(0.0, abs=1e-6)
    dense_s, dense_t = torch.randn(2, 5, 3, 3), torch.randn(2, 5, 3, 3)
    flat = kl_distill(
        dense_s.permute(0, 2, 3, 1).reshape(-1, 5), dense_t.permute(0, 2, 3, 1).reshape(-1, 5)
    )
    assert kl_distill(dense_s, dense_t, dim=1).item() == pytest.approx(flat.item(), rel=1e-5)
    with pytest.raises(ValueError, match="teacher_logits"):
        kl_distill(s, torch.full((4, 5), float("nan")))


# ------------------------------------------------------------------------------ modules / queue
def test_modules_wrap_functions_with_weight():
    torch.manual_seed(4)
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    assert set(LOSSES) >= {
        "l1_region",
        "symmetric_infonce",
        "pixel_text_ce",
        "pseudo_label_ce",
        "kl_distill",
    }
    assert build_loss("l1_region", weight=0.5)(s, t).item() == pytest.approx(
        0.5 * l1_region_distill(s, t).item()
    )
    assert build_loss("symmetric_infonce", temperature=20.0)(s, t).item() == pytest.approx(
        symmetric_infonce(s, t, temperature=20.0).item()
    )
    assert build_loss("kl_distill", temperature=2.0, weight=3.0)(s, t).item() == pytest.approx(
        3.0 * kl_distill(s, t, temperature=2.0).item()
    )
    with pytest.raises(KeyError, match="unknown loss"):
        build_loss("nope")


def test_embedding_queue_fifo():
    queue = EmbeddingQueue(2, size=3)
    assert queue.get().shape == (0, 2)
    queue.enqueue(torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    assert queue.get()[:, 0].tolist() == [1.0, 2.0]
    queue.enqueue(torch.tensor([[3.0, 3.0], [4.0, 4.0]]))  # wraps: 1 dropped
    assert queue.get()[:, 0].tolist() == [2.0, 3.0, 4.0]
    queue.enqueue(torch.arange(10.0).repeat(2, 1).t())  # more than size: keep last 3
    assert queue.get()[:, 0].tolist() == [7.0, 8.0, 9.0]
    x = torch.ones(1, 2, requires_grad=True)
    queue.enqueue(x * 5)
    assert not queue.get().requires_grad
    assert "data" in queue.state_dict() and "count" in queue.state_dict()
    with pytest.raises(ValueError, match="expects"):
        queue.enqueue(torch.zeros(1, 3))
