"""The `full` profile (picked on a GPU) uses the same code at larger sizes: check that the
pieces fit together there too, on a few items, on the CPU."""
import torch

from tutorlib import models, world
from tutorlib.zoo import pretrained


def test_full_profile_sizes_fit_together(monkeypatch):
    monkeypatch.setenv("TUTORLIB_PROFILE", "full")
    scenes = world.sample_scenes(3, seed=0)
    images = world.render_images(scenes)
    assert images.shape == (3, 3, 64, 64)
    mel = world.log_mel(world.render_audio(scenes))
    video = world.render_video(scenes)
    assert video.shape == (3, 8, 3, 64, 64)
    clip = pretrained.build_mini_clip()
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
    from tutorlib.methods import inversion, prompts, restore
    monkeypatch.setenv("TUTORLIB_PROFILE", "full")
    clip, tok = pretrained.build_mini_clip().eval(), world.Tokenizer()
    images = world.images_float(world.render_images(world.sample_scenes(2, seed=0)))
    learner = prompts.PromptLearner(clip.text_tower, tok, ["red circle", "blue star"], init="a photo of a")
    visual = restore.VisualPrompts(learner, clip.image_tower.width)
    last = len(clip.image_tower.encoder.blocks) - 1
    states = clip.image_tower.hidden(images, last)
    img = restore.encode_image_with_prompts(clip.image_tower, None, visual(), last, states=states)
    assert img.shape == (2, 256) and learner().shape == (2, 256)
    words, losses = inversion.oti(clip.text_tower, tok, img.detach(), steps=2, progress=False)
    assert words.shape == (2, 1, clip.text_tower.width) and losses.shape == (2,)
    patches, _ = inversion.ovi(clip.image_tower, learner().detach(), steps=2, progress=False)
    assert inversion.encode_pseudo_patches(clip.image_tower, patches).shape == (2, 256)


def test_full_profile_progressive_stages_fit_together(monkeypatch):
    """Lesson 05's pieces at `full` sizes: the backbones' token outputs on 64 px images, 8-frame
    videos and 0.5 s sounds feed a width-256 OneEncoder through stage 1 and stage 2."""
    from tutorlib.methods import progressive
    from tutorlib.zoo import unimodal
    monkeypatch.setenv("TUTORLIB_PROFILE", "full")
    r = unimodal.recipe("video")
    assert r["width"] == 128 and r["depth"] == 2 and r["steps"] >= 2000
    scenes = world.sample_scenes(4, seed=0)
    raw = {"image": world.render_images(scenes), "audio": world.log_mel(world.render_audio(scenes)),
           "video": world.render_video(scenes)}
    feats = {}
    with torch.no_grad():
        for m, x in raw.items():
            tower = unimodal.make_backbone(m).eval()
            feats[m] = {"tokens": tower(x, return_tokens=True)[1], "mask": None}
    assert {m: f["tokens"].shape[1:] for m, f in feats.items()} == {
        "image": (65, 128), "audio": (63, 128), "video": (512, 128)}
    feats["text"] = {"tokens": torch.randn(4, 12, 384), "mask": torch.ones(4, 12, dtype=torch.bool)}
    model = progressive.OneEncoder(256, dropout=0.1).add_modality("image", 128).add_modality("text", 384)
    progressive.fit_pairs(model, ("image", feats["image"]), ("text", feats["text"]), steps=1, batch_size=4, progress=False)
    stage1 = models.count_parameters(model)
    model.add_modality("audio", 128, freeze=True)
    progressive.fit_pairs(model, ("audio", feats["audio"]), ("image", feats["image"]), steps=1, batch_size=4, progress=False)
    model.add_modality("video", 128, freeze=True)
    assert all(progressive.embed(model, m, f).shape == (4, 256) for m, f in feats.items())
    assert models.count_parameters(model) / 2 <= stage1 / 3          # audio and video: a third each at most
