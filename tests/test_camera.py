"""tutorlib.world.camera: the new camera of lessons 03 and 04."""
import pytest
import torch

from tutorlib import world


@pytest.fixture(scope="module")
def images():
    return (world.render_images(world.sample_scenes(4, seed=0)) * 255).round().to(torch.uint8)


def test_shape_range_and_dtype(images):
    x = world.new_camera(images, seed=1)
    assert x.shape == images.shape and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1


def test_the_same_seed_gives_the_same_pictures_and_leaves_the_global_state_alone(images):
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, b = world.new_camera(images, seed=3), world.new_camera(images, seed=3)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(a, world.new_camera(images, seed=4))


def test_integer_and_float_pictures_give_the_same_result(images):
    assert torch.equal(world.new_camera(images, seed=2), world.new_camera(world.images_float(images), seed=2))


def test_it_is_the_documented_transform(images):
    x = world.images_float(images)
    assert torch.allclose(world.new_camera(images, seed=0, noise=0.0), (0.45 * x + 0.3).clamp(0, 1))
    g = torch.Generator().manual_seed(7)
    want = (0.45 * x + 0.3 + 0.12 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.equal(world.new_camera(images, seed=7), want)
    assert torch.equal(world.new_camera(images, seed=0, contrast=1.0, brightness=0.0, noise=0.0), x)


def test_washed_out_means_less_contrast(images):
    x = world.images_float(images)
    assert world.new_camera(images, seed=0, noise=0.0).std() < x.std()


@pytest.mark.parametrize("kwargs, name", [
    (dict(images=torch.zeros(3, 8, 8, dtype=torch.uint8), seed=0), "images"),
    (dict(images=torch.zeros(2, 1, 8, 8), seed=0), "images"),
    (dict(images=[[0]], seed=0), "images"),
    (dict(images=torch.zeros(2, 3, 8, 8), seed=-1), "seed"),
    (dict(images=torch.zeros(2, 3, 8, 8), seed=1.5), "seed"),
    (dict(images=torch.zeros(2, 3, 8, 8), seed=True), "seed"),
    (dict(images=torch.zeros(2, 3, 8, 8), seed=0, noise=-0.1), "noise"),
    (dict(images=torch.zeros(2, 3, 8, 8), seed=0, contrast=float("nan")), "contrast"),
    (dict(images=torch.zeros(2, 3, 8, 8), seed=0, brightness="0.3"), "brightness"),
])
def test_bad_input_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        world.new_camera(**kwargs)
