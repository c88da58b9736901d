"""BARON's neighbourhood sampling rules: grid, aspect/probability, boundary cut-off, filters, groups,
permutations (pure torch)."""

import math

import pytest
import torch

from detectors.modeling.baron_sampler import (
    NeighborhoodSampler,
    cell_probabilities,
    grid_boxes,
    image_area_share,
    normalize_in_bag,
    single_region_ids,
)

RULES = dict(alpha=3.0, base_probability=0.3, cutoff_thresh=0.3, interval=-0.1)


def test_grid_is_row_major_box_sized_and_overlapping():
    grid = grid_boxes(torch.tensor([100.0, 200.0, 110.0, 220.0]), interval=-0.1)
    assert grid.shape == (9, 4)
    assert grid[4].tolist() == [100.0, 200.0, 110.0, 220.0]
    assert torch.allclose(grid[3], torch.tensor([91.0, 200.0, 101.0, 220.0]))  # left: shifted 0.9 w
    assert torch.allclose(grid[1], torch.tensor([100.0, 182.0, 110.0, 202.0]))  # up: shifted 0.9 h
    assert torch.allclose(grid[8], torch.tensor([109.0, 218.0, 119.0, 238.0]))  # bottom right
    sizes = grid[:, 2:] - grid[:, :2]
    assert torch.allclose(sizes, torch.tensor([10.0, 20.0]).expand(9, 2))


def test_probabilities_follow_aspect_and_cap():
    # square box far from the borders: every side p0, corners sqrt(p0 * p0) = p0
    probs = cell_probabilities(torch.tensor([40.0, 40.0, 60.0, 60.0]), (100, 100), **RULES)
    assert probs[4] == 1.0 and torch.allclose(
        probs[[0, 1, 2, 3, 5, 6, 7, 8]], torch.full((8,), 0.3)
    )
    # tall box (h / w = 2): left/right capped at p0, up/down (1/2)^3 p0; corners sqrt(p0 * p0 / 8)
    probs = cell_probabilities(torch.tensor([45.0, 40.0, 55.0, 60.0]), (100, 100), **RULES)
    assert probs[3].item() == pytest.approx(0.3) and probs[1].item() == pytest.approx(0.3 / 8)
    assert probs[0].item() == pytest.approx(math.sqrt(0.3 * 0.3 / 8))
    # wide box (w / h = 1.25): left/right (0.8)^3 p0
    probs = cell_probabilities(torch.tensor([40.0, 40.0, 65.0, 60.0]), (100, 100), **RULES)
    assert probs[5].item() == pytest.approx(0.8**3 * 0.3, rel=1e-5) and probs[
        7
    ].item() == pytest.approx(0.3)


def test_boundary_cut_off():
    # room on the left = 4 / 20 = 0.2 <= cutoff + interval = 0.2 -> no left cells; right room plenty
    probs = cell_probabilities(torch.tensor([4.0, 40.0, 24.0, 60.0]), (100, 100), **RULES)
    assert probs[[0, 3, 6]].tolist() == [0.0, 0.0, 0.0] and probs[5] > 0
    probs = cell_probabilities(
        torch.tensor([5.0, 40.0, 25.0, 60.0]), (100, 100), **RULES
    )  # 0.25 > 0.2
    assert probs[3] > 0
    # a box filling the image has no neighbours at all
    probs = cell_probabilities(torch.tensor([0.0, 0.0, 100.0, 100.0]), (100, 100), **RULES)
    assert probs.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]


def test_filters_objectness_aspect_nms_and_fallback():
    sampler = NeighborhoodSampler(topk=3, use_gt=False)
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 100], [20, 20, 30, 30], [70, 70, 80, 80]],
        dtype=torch.float32,
    )
    logits = torch.logit(torch.tensor([0.95, 0.9, 0.99, 0.5, 0.8]))
    # top-3: boxes 2 (aspect 0.2 -> out), 0, 1 (overlaps 0 -> NMS 0.1 removes it)
    size = {"image_size": (100, 100)}
    assert sampler.select(boxes, logits, **size)[0].tolist() == [[0, 0, 10, 10]]
    # nothing above the objectness threshold: the best candidate alone
    low = torch.logit(torch.tensor([0.5, 0.6, 0.7, 0.1, 0.2]))
    assert sampler.select(boxes, low, **size)[0].tolist() == [[50, 50, 60, 100]]
    # GT boxes enter with score 1
    with_gt = NeighborhoodSampler(topk=3).select(
        boxes, low, gt_boxes=torch.tensor([[30.0, 30, 40, 40]]), **size
    )
    assert with_gt[0].tolist() == [[30, 30, 40, 40]] and with_gt[1].tolist() == [1.0]
    with pytest.raises(ValueError, match="objectness_logits"):
        sampler.select(boxes, logits[:2], **size)
    with pytest.raises(ValueError, match="NaN"):
        sampler.select(torch.full((1, 4), float("nan")), logits[:1], **size)


def test_groups_and_permutations():
    torch.manual_seed(0)
    sampler = NeighborhoodSampler(max_groups=3, max_permutations=2, base_probability=0.9, alpha=0.0)
    box = torch.tensor([[40.0, 40.0, 60.0, 60.0]])
    bags = sampler.sample(box, torch.tensor([5.0]), (100, 100))
    assert bags.bag_boxes.shape[0] == 3  # 3 distinct groups
    assert int(bags.seq_lengths.sum()) == bags.num_regions
    starts = torch.cumsum(bags.seq_lengths, 0) - bags.seq_lengths
    groups = {}
    for s, (start, length) in enumerate(zip(starts.tolist(), bags.seq_lengths.tolist())):
        cells = bags.cells[start : start + length].tolist()
        assert 4 in cells and len(set(cells)) == length
        groups.setdefault(int(bags.seq_bag[s]), []).append(cells)
        span = bags.bag_boxes[bags.seq_bag[s]]
        region = bags.boxes[start : start + length]
        assert torch.allclose(
            bags.normed_boxes[start : start + length], normalize_in_bag(region, span)
        )
        assert (region[:, :2] >= span[:2] - 1e-4).all() and (region[:, 2:] <= span[2:] + 1e-4).all()
    assert len({tuple(sorted(v[0])) for v in groups.values()}) == 3
    for perms in groups.values():  # min(2, k!) distinct orders of one set
        assert len(perms) == min(2, math.factorial(len(perms[0])))
        assert (
            len({tuple(p) for p in perms}) == len(perms)
            and len({tuple(sorted(p)) for p in perms}) == 1
        )


def test_lone_box_gives_one_bag_of_itself_and_regions_stay_in_the_image():
    sampler = NeighborhoodSampler()
    bags = sampler.sample(torch.tensor([[0.0, 0.0, 64.0, 64.0]]), torch.tensor([5.0]), (64, 64))
    assert bags.seq_lengths.tolist() == [1] and bags.cells.tolist() == [4]
    assert torch.allclose(bags.normed_boxes, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    torch.manual_seed(1)
    bags = NeighborhoodSampler(base_probability=1.0, alpha=0.0).sample(
        torch.tensor([[2.0, 20.0, 30.0, 40.0]]), torch.tensor([5.0]), (64, 64)
    )
    assert (bags.boxes >= 0).all() and (bags.boxes[:, [0, 2]] <= 64).all()
    empty = sampler.sample(torch.zeros(0, 4), torch.zeros(0), (64, 64))
    assert empty.num_regions == 0 and empty.bag_boxes.shape == (0, 4)


def test_centres_cover_less_than_one_percent_of_the_image_are_filtered():
    # official: bbox_overlaps(image_box, proposals, mode="iof") > area_ratio_thr (0.01), i.e. the
    # share of the image box [0, 0, w - 1, h - 1] covered by the proposal (baron_base.py)
    shares = image_area_share(
        torch.tensor([[0.0, 0.0, 9.0, 11.0], [90.0, 95.0, 120.0, 130.0]]), (101, 201)
    )
    assert shares.tolist() == pytest.approx([9 * 11 / 20000, 30 * 5 / 20000])  # 2nd: clipped
    boxes = torch.tensor([[10.0, 10.0, 15.0, 15.0], [60.0, 60.0, 80.0, 80.0]])
    logits = torch.logit(torch.tensor([0.99, 0.9]))  # the tiny box scores higher
    official = NeighborhoodSampler(use_gt=False)
    assert official.area_ratio_thresh == 0.01
    centres, scores = official.select(boxes, logits, image_size=(100, 100))
    assert centres.tolist() == [[60, 60, 80, 80]] and scores.tolist() == pytest.approx([0.9])
    # without the filter (the old behaviour) the 5 x 5 box (0.26% of the image) is a centre too
    unfiltered = NeighborhoodSampler(use_gt=False, area_ratio_thresh=0.0)
    assert unfiltered.select(boxes, logits, image_size=(100, 100))[0].shape[0] == 2
    with pytest.raises(ValueError, match="area_ratio_thresh"):
        NeighborhoodSampler(area_ratio_thresh=1.0)


def test_single_region_ids_identify_copies_of_one_region():
    torch.manual_seed(0)
    sampler = NeighborhoodSampler(max_groups=3, max_permutations=2, base_probability=0.9, alpha=0.0)
    two_centres = torch.tensor([[20.0, 20.0, 40.0, 40.0], [60.0, 60.0, 80.0, 80.0]])
    first = sampler.sample(two_centres, torch.tensor([5.0, 5.0]), (100, 100))
    second = sampler.sample(two_centres[:1], torch.tensor([5.0]), (100, 100))
    ids = single_region_ids([first, second])
    boxes = torch.cat([first.boxes, second.boxes])
    image = torch.cat([torch.zeros(first.num_regions), torch.ones(second.num_regions)])
    assert ids.shape == (first.num_regions + second.num_regions,)
    # equal ids <=> same image and the same box (a copy through another group / permutation)
    same_id = ids[:, None] == ids[None]
    same_box = (boxes[:, None] == boxes[None]).all(-1) & (image[:, None] == image[None])
    assert torch.equal(same_id, same_box)
    assert int(same_id.sum()) > ids.numel()  # the batch does hold copies (the centre cell at least)
    assert first.centres.max().item() == 1 and second.centres.unique().tolist() == [0]
