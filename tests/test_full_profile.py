"""The `full` profile (picked on a GPU) uses the same code at larger sizes: check that the
pieces fit together there too, on a few items, on the CPU."""
import torch

from tutorlib import models, pretrained, world


def test_full_profile_sizes_fit_together(monkeypatch):
    monkeypatch.setenv("TUTORLIB_PROFILE", "full")
    scenes = world.sample_scenes(3, seed=0)
    images = world.render_images(scenes)
    assert images.shape == (3, 3, 64, 64)
    mel = world.log_mel(world.render_audio(scenes))
    video = world.render_video(scenes)
    assert video.shape == (3, 8, 3, 64, 64)
    clip = models.mini_clip()
    tok = world.Tokenizer()
    with torch.no_grad():
        assert clip.encode_image(images).shape == (3, 256)
        assert clip.encode_text(tok(world.captions(scenes)[0])).shape == (3, 256)
        assert models.AudioTower()(mel).shape == (3, 128)
        assert models.VideoTower()(video).shape == (3, 128)
    r = pretrained.recipe()
    assert r["steps"] > 800 and r["embed_dim"] == 256 and r["depth"] == 4
    # the centres stay on the 8x8 patch grid at 64 px: H/4, H/2, 3H/4
    single = world.make_scenes("square", "red", "small", "top left")
    img = world.render_images(single)[0]
    red = (img[0] > 0.7) & (img[1] < 0.3)
    ys, xs = torch.nonzero(red, as_tuple=True)
    assert abs(xs.float().mean().item() + 0.5 - 16) < 1 and abs(ys.float().mean().item() + 0.5 - 16) < 1


def test_full_profile_prompts_and_inversion_fit_together(monkeypatch):
    """Lessons 03 and 04's pieces on the `full` towers: prompts before the last image block,
    OTI and OVI, a few items and steps."""
    from tutorlib import inversion, prompts
    monkeypatch.setenv("TUTORLIB_PROFILE", "full")
    clip, tok = models.mini_clip().eval(), world.Tokenizer()
    images = world.images_float(world.render_images(world.sample_scenes(2, seed=0)))
    learner = prompts.PromptLearner(clip.text_tower, tok, ["red circle", "blue star"], init="a photo of a")
    visual = prompts.VisualPrompts(learner, clip.image_tower.width)
    last = len(clip.image_tower.encoder.blocks) - 1
    states = clip.image_tower.hidden(images, last)
    img = prompts.encode_image_with_prompts(clip.image_tower, None, visual(), last, states=states)
    assert img.shape == (2, 256) and learner().shape == (2, 256)
    words, losses = inversion.oti(clip.text_tower, tok, img.detach(), steps=2, progress=False)
    assert words.shape == (2, 1, clip.text_tower.width) and losses.shape == (2,)
    patches, _ = inversion.ovi(clip.image_tower, learner().detach(), steps=2, progress=False)
    assert inversion.encode_pseudo_patches(clip.image_tower, patches).shape == (2, 256)
