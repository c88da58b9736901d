"""BARON's losses on hand-computed cases: queue rows of the same image are masked, in-batch rows of the
same bag are masked, the queue module enqueues after the loss and keeps ids."""

import math

import pytest
import torch

from distill.losses import EmbeddingQueue, QueuedInfoNCELoss, build_loss, symmetric_infonce

S = 5.0


def test_queue_rows_of_the_same_image_are_masked():
    a = b = torch.tensor([[1.0, 0.0]])
    queue_b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    unmasked = symmetric_infonce(a, b, temperature=S, queue_b=queue_b)
    # a -> b: logits [S, S, 0]; b -> a: one column, CE 0
    assert unmasked.item() == pytest.approx(0.5 * math.log(2 + math.exp(-S)), rel=1e-5)
    masked = symmetric_infonce(
        a,
        b,
        temperature=S,
        queue_b=queue_b,
        query_ids=torch.tensor([5]),
        queue_b_ids=torch.tensor([5, 6]),
    )
    assert masked.item() == pytest.approx(0.5 * math.log1p(math.exp(-S)), rel=1e-5)
    other = symmetric_infonce(
        a,
        b,
        temperature=S,
        queue_b=queue_b,
        query_ids=torch.tensor([7]),
        queue_b_ids=torch.tensor([5, 6]),
    )
    assert other.item() == pytest.approx(unmasked.item(), rel=1e-6)


def test_same_bag_rows_are_not_negatives_but_other_bags_are():
    # rows 0 and 1 are two permutations of one bag (group 0), row 2 another bag
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    b = a.clone()
    grouped = symmetric_infonce(a, b, temperature=S, image_ids=torch.tensor([0, 0, 1]))
    # rows 0/1: logits [S, -inf, 0] -> log(1 + e^-S); row 2: [0, 0, S] -> log(1 + 2 e^-S)
    expected = (2 * math.log1p(math.exp(-S)) + math.log1p(2 * math.exp(-S))) / 3
    assert grouped.item() == pytest.approx(expected, rel=1e-5)


def test_queue_id_errors_name_the_field():
    a = torch.eye(2)
    with pytest.raises(ValueError, match="queue_b_ids must have shape"):
        symmetric_infonce(
            a,
            a,
            queue_b=torch.eye(2),
            query_ids=torch.tensor([1, 2]),
            queue_b_ids=torch.tensor([1]),
        )
    with pytest.raises(ValueError, match="without query_ids"):
        symmetric_infonce(a, a, queue_b=torch.eye(2), queue_b_ids=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="query_ids must have shape"):
        symmetric_infonce(a, a, query_ids=torch.tensor([1]))
    with pytest.raises(ValueError, match="NaN"):
        EmbeddingQueue(2, size=4).enqueue(torch.full((1, 2), float("nan")))


def test_embedding_queue_keeps_ids_in_fifo_order():
    queue = EmbeddingQueue(2, size=3)
    queue.enqueue(torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.tensor([10, 11]))
    queue.enqueue(torch.tensor([[3.0, 0.0], [4.0, 0.0]]), torch.tensor([12, 13]))
    assert queue.get()[:, 0].tolist() == [2.0, 3.0, 4.0] and queue.get_ids().tolist() == [
        11,
        12,
        13,
    ]
    queue.enqueue(torch.tensor([[5.0, 0.0]]))
    assert queue.get_ids().tolist() == [12, 13, -1]
    assert set(queue.state_dict()) == {"data", "ids", "count"}


def test_queued_loss_masks_then_enqueues():
    loss = build_loss("queued_infonce", dim=2, temperature=S, weight=0.5, queue_size=4)
    assert isinstance(loss, QueuedInfoNCELoss)
    a = torch.tensor([[1.0, 0.0]])
    first = loss(a, a, image_ids=torch.tensor([3]))
    assert first.item() == pytest.approx(0.0, abs=1e-7)  # a single pair, empty queues
    assert loss.student_queue.get_ids().tolist() == [3] and loss.teacher_queue.get().shape == (1, 2)
    same_image = loss(a, a, image_ids=torch.tensor([3]))  # the queued copy is masked
    assert same_image.item() == pytest.approx(0.0, abs=1e-7)
    other_image = loss(a, a, image_ids=torch.tensor([4]))  # the two queued copies are negatives now
    assert other_image.item() == pytest.approx(
        0.5 * math.log(3.0), rel=1e-5
    )  # logits [S, S, S] both ways
    student = torch.tensor([[0.6, 0.8]], requires_grad=True)
    total = loss(student, a, image_ids=torch.tensor([5])) + loss(
        student, a, image_ids=torch.tensor([6])
    )
    total.backward()  # enqueueing did not break the first graph
    assert student.grad.abs().sum() > 0
    loss.eval()
    loss(a, a, image_ids=torch.tensor([9]))
    assert int(loss.student_queue.count) == 5  # no enqueue at evaluation


def _bags(centres: list[int], cells: list[int]):
    from detectors.modeling.baron_sampler import Bags

    n = len(cells)
    zeros = torch.zeros(n, 4)
    one = torch.tensor([0])
    return Bags(
        zeros, zeros, torch.tensor(cells), torch.tensor(centres), torch.tensor([n]), one, zeros[:1]
    )


def _single_loss(student, teacher, image_ids, group_ids, queue):
    loss = QueuedInfoNCELoss(2, temperature=S, weight=1.0, queue_size=8)
    loss.student_queue.enqueue(queue, torch.full((queue.shape[0],), 9))
    loss.teacher_queue.enqueue(queue, torch.full((queue.shape[0],), 9))
    return loss(student, teacher, image_ids=image_ids, group_ids=group_ids)


def test_single_region_loss_of_copies_equals_the_deduplicated_batch():
    from detectors.modeling.baron_sampler import single_region_ids

    # one region (image 0, centre 0, cell 4) appears 3 times (the centre cell of 3 groups);
    # the queue holds two regions of another image
    student = torch.tensor([[0.6, 0.8]])
    teacher = torch.tensor([[0.8, 0.6]])
    queue = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ids = single_region_ids([_bags([0, 0, 0], [4, 4, 4])])
    assert ids.tolist() == [4, 4, 4]
    image = torch.zeros(3, dtype=torch.long)
    copies = _single_loss(student.expand(3, 2), teacher.expand(3, 2), image, ids, queue)
    dedup = _single_loss(student, teacher, image[:1], None, queue)
    # hand-computed: positive S * 0.96, queue negatives S * 0.6 / S * 0.8 (a -> b) and
    # S * 0.8 / S * 0.6 (b -> a): both directions log(1 + e^(S(0.6-0.96)) + e^(S(0.8-0.96)))
    expected = math.log(1 + math.exp(S * (0.6 - 0.96)) + math.exp(S * (0.8 - 0.96)))
    assert dedup.item() == pytest.approx(expected, rel=1e-5)
    assert copies.item() == pytest.approx(dedup.item(), rel=1e-6)
    # the old call (no region ids): each copy is a negative of the others, +log(3) at least
    old = _single_loss(student.expand(3, 2), teacher.expand(3, 2), image, None, queue)
    assert old.item() == pytest.approx(
        math.log(3 + math.exp(S * (0.6 - 0.96)) + math.exp(S * (0.8 - 0.96))), rel=1e-5
    )


def test_single_region_ids_mask_copies_only():
    from detectors.modeling.baron_sampler import single_region_ids

    # image 0: centres 0 and 1 (cell 4 each, twice); image 1: centre 0, cells 4 and 5
    ids = single_region_ids([_bags([0, 1, 0, 1], [4, 4, 4, 4]), _bags([0, 0], [4, 5])])
    assert ids.tolist() == [4, 13, 4, 13, 22, 23]
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    got = symmetric_infonce(a, a, temperature=S, image_ids=ids)
    logits = S * a @ a.T
    copy = (ids[:, None] == ids[None]) & ~torch.eye(6, dtype=torch.bool)
    logits = logits.masked_fill(copy, float("-inf"))
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(6))  # symmetric: a == b
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
