"""tutorlib.world.images (images and videos: shapes, colours and sizes drawn where they belong, objects on the patch grid, motion)."""
import pytest
import torch

from tutorlib import world
from tutorlib.world import COLOURS, SHAPES, Scenes


def _mask(img, colour, tol=0.06):
    """Pixels of ``img`` [3, H, W] within ``tol`` of RGB[colour] in every channel."""
    return (img - world.RGB[COLOURS.index(colour)][:, None, None]).abs().amax(0) < tol


def _centroid(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    assert len(xs) > 0, "object not found in the image"
    return xs.float().mean().item() + 0.5, ys.float().mean().item() + 0.5   # pixel centres


def test_scene_renders_the_same_in_any_batch():
    sc = world.sample_scenes(12, seed=8)
    whole = world.render_images(sc)
    alone = torch.cat([world.render_images(sc[i]) for i in range(len(sc))])
    assert torch.allclose(whole, alone, atol=1e-6)
    chunked = world.render_images(sc, chunk=5)
    assert torch.allclose(whole, chunked, atol=1e-6)


def test_render_images_shape_and_range():
    sc = world.sample_scenes(16, seed=1)
    im = world.render_images(sc)
    assert im.shape == (16, 3, 32, 32)          # quick profile
    assert im.dtype == torch.float32
    assert float(im.min()) >= 0.0 and float(im.max()) <= 1.0
    assert world.render_images(sc, 48).shape == (16, 3, 48, 48)


@pytest.mark.parametrize("shape", SHAPES)
def test_centre_pixel_has_the_named_colour(shape):
    for colour in COLOURS:
        img = world.render_images(world.make_scenes(shape, colour, "large", "center", seed=11))[0]
        centre = img[:, 16, 16]
        assert torch.allclose(centre, world.RGB[COLOURS.index(colour)], atol=0.06), (shape, colour)
        for y, x in ((0, 0), (0, 31), (31, 0), (31, 31)):
            corner = img[:, y, x]
            assert float(corner.max() - corner.min()) < 0.05, "background is not grey"
            assert 0.2 < float(corner.mean()) < 0.6


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("shape", SHAPES)
def test_objects_sit_on_the_patch_grid(shape, size):
    # grid cells' centres are at H/4, H/2, 3H/4: on patch corners for 8x8 patches at 32 px
    k = size / 32
    tol = k * (1.2 if shape == "triangle" else 0.3)      # a triangle's centroid sits lower
    for pos, (cx, cy) in {"top left": (8, 8), "center": (16, 16), "bottom right": (24, 24),
                          "top right": (24, 8), "left": (8, 16)}.items():
        img = world.render_images(world.make_scenes(shape, "blue", "large", pos), size)[0]
        x, y = _centroid(_mask(img, "blue"))
        assert abs(x - k * cx) <= tol and abs(y - k * cy) <= tol, (shape, pos, x, y)


def test_large_objects_cover_more_pixels():
    for shape in SHAPES:
        big = _mask(world.render_images(world.make_scenes(shape, "green", "large"))[0], "green").sum()
        small = _mask(world.render_images(world.make_scenes(shape, "green", "small"))[0], "green").sum()
        assert big > 1.5 * small > 0


def test_shapes_look_different():
    imgs = world.render_images(Scenes(
        shape=torch.tensor([[s, -1] for s in range(6)]), colour=torch.zeros(6, 2, dtype=torch.long),
        size=torch.ones(6, 2, dtype=torch.long), position=torch.full((6, 2), 4),
        motion=torch.zeros(6, 2, dtype=torch.long), seed=torch.zeros(6, dtype=torch.long)))
    masks = torch.stack([_mask(im, "red") for im in imgs]).flatten(1).float()
    for i in range(6):
        for j in range(i + 1, 6):
            assert (masks[i] != masks[j]).sum() > 10, (SHAPES[i], SHAPES[j])


def test_render_video_shape_and_motion():
    vid = world.render_video(world.sample_scenes(3, seed=0))
    assert vid.shape == (3, 4, 3, 32, 32)
    assert world.render_video(world.sample_scenes(2), frames=6).shape == (2, 6, 3, 32, 32)

    def track(motion):
        v = world.render_video(world.make_scenes("circle", "red", "small", "center", motion))[0]
        return [_centroid(_mask(v[t], "red")) for t in range(v.shape[0])]

    right = track("right")
    xs = [x for x, _ in right]
    assert all(b > a for a, b in zip(xs, xs[1:])), xs
    assert max(abs(y - right[0][1]) for _, y in right) < 0.5
    still = track("still")
    assert max(abs(x - still[0][0]) + abs(y - still[0][1]) for x, y in still) < 0.5
    left = [x for x, _ in track("left")]
    assert all(b < a for a, b in zip(left, left[1:]))
    down = [y for _, y in track("down")]
    assert all(b > a for a, b in zip(down, down[1:]))     # image rows grow downwards
    up = [y for _, y in track("up")]
    assert all(b < a for a, b in zip(up, up[1:]))


def test_video_first_frame_is_the_image():
    sc = world.sample_scenes(5, seed=9)
    assert torch.equal(world.render_video(sc)[:, 0], world.render_images(sc))


def test_render_bad_input():
    sc = world.sample_scenes(2)
    with pytest.raises(ValueError, match=r"^image_size:"):
        world.render_images(sc, image_size=0)
    with pytest.raises(ValueError, match=r"^image_size:"):
        world.render_images(sc, image_size=4)
    for fn in (world.render_images, world.render_audio, world.render_video):
        with pytest.raises(ValueError, match=r"^scenes:"):
            fn(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"^scenes:"):
        world.captions(["a red circle"])
    with pytest.raises(ValueError, match=r"^style:"):
        world.captions(sc, style="poetic")
    with pytest.raises(ValueError, match=r"^frames:"):
        world.render_video(sc, frames=0)
    with pytest.raises(ValueError, match=r"^sample_rate:"):
        world.render_audio(sc, sample_rate=0)
    with pytest.raises(ValueError, match=r"^wave:"):
        world.log_mel(torch.zeros(100))


def test_defaults_read_the_profile_at_call_time(quick_profile):
    sc = world.sample_scenes(2, seed=0)
    quick_profile(image_size=40, video_frames=3, sample_rate=4000, duration=0.5, n_fft=128, hop=32,
                  n_mels=16)
    assert world.render_images(sc).shape == (2, 3, 40, 40)
    assert world.render_video(sc).shape == (2, 3, 3, 40, 40)
    wave = world.render_audio(sc)
    assert wave.shape == (2, 2000)
    assert world.log_mel(wave).shape == (2, 16, 1 + 2000 // 32)
    assert torch.equal(world.log_mel(wave), world.log_mel(wave, 4000, 16, 128, 32))


def test_object_masks_paint_the_rendered_pixels():
    sc = world.sample_scenes(64, seed=3, two_object_frac=0.5)
    img, masks = world.render_images(sc), world.object_masks(sc)
    assert masks.shape == (64, 2, 32, 32) and not bool((masks[:, 0] & masks[:, 1]).any())
    assert not bool(masks[sc.n_objects == 1, 1].any())
    colour = (world.RGB[sc.colour.clamp_min(0)])                                        # [N, 2, 3]
    for slot in (0, 1):
        n, r, c = torch.nonzero(masks[:, slot], as_tuple=True)
        drift = (img[n, :, r, c] - colour[n, slot]).abs().max()
        assert drift <= 0.03, "a masked pixel does not have its object's colour (jitter is at most 0.025)"
    with pytest.raises(ValueError, match="scenes"):
        world.object_masks("scenes")
