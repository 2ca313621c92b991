"""The image pool decides on the device: same history-buffer rule, state that round-trips, no host sync."""

import sys
from pathlib import Path

import torch

from sesim.methods.pool import ImagePool

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from op_count import OpCounter


def images(count, seed=0):
    return torch.rand(count, 1, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_the_pool_fills_then_returns_a_stored_image_about_half_the_time():
    pool, incoming = ImagePool(size=5, seed=1), images(205)
    for image in incoming[:5]:  # filling: every image comes back as it is and is kept
        assert torch.equal(pool.query(image), image)
    assert torch.equal(pool.images, incoming[:5, 0]) and int(pool.count) == 5
    swapped = 0
    for image in incoming[5:]:
        before = pool.images.clone()
        out = pool.query(image)
        if torch.equal(out, image):
            assert torch.equal(pool.images, before)  # kept out: the pool is unchanged
        else:
            swapped += 1
            slot = next(i for i in range(5) if torch.equal(before[i], out[0]))  # a stored image came out
            assert torch.equal(pool.images[slot], image[0])  # and the incoming one took its place
    assert 70 < swapped < 130  # probability 1/2 over 200 draws


def test_a_batch_is_taken_image_by_image():
    pool = ImagePool(size=1, seed=0)
    batch = images(2)[:, 0]
    out = pool.query(batch)
    assert out.shape == batch.shape and torch.equal(out[0], batch[0])  # the first fills the only slot
    assert torch.equal(out[1], batch[1]) or torch.equal(out[1], batch[0])


def test_state_round_trips_and_the_pool_goes_on_drawing_the_same():
    first = ImagePool(size=4, seed=3)
    for image in images(10):
        first.query(image)
    second = ImagePool(size=4, seed=99)
    second.load_state_dict(first.state_dict())
    for image in images(20, seed=1):
        assert torch.equal(first.query(image), second.query(image))


def test_an_empty_pool_saves_and_loads():
    pool = ImagePool(size=3, seed=0)
    state = pool.state_dict()
    fresh = ImagePool(size=3, seed=0)
    fresh.load_state_dict(state)
    image = images(1)[0]
    assert torch.equal(fresh.query(image), pool.query(image))


def test_a_query_never_waits_for_the_host():
    pool = ImagePool(size=2, seed=0)
    pool.query(images(1)[0])  # the buffer is made on the first call
    counter = OpCounter()
    with counter:
        for image in images(5, seed=2):
            pool.query(image)
    assert counter.host_syncs == {} and sum(counter.ops.values()) > 0
