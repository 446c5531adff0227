"""tutorlib.course.plots: every figure for valid input, ValueError for bad input."""
import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from tutorlib.course import plots
from tutorlib import world

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def scenes():
    return world.sample_scenes(5, seed=0)


def test_scene_grid(scenes):
    images = world.render_images(scenes)
    texts, _ = world.captions(scenes)
    fig = plots.scene_grid(images, texts, cols=3)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6                      # 2 rows x 3 cols
    assert [ax.get_title() for ax in fig.axes[:5]] != [""] * 5
    assert len(fig.axes[0].images) == 1 and len(fig.axes[5].images) == 0
    u8 = (images * 255).round().to(torch.uint8)
    fig = plots.scene_grid(u8)
    assert isinstance(fig, Figure)
    assert fig.axes[0].images[0].get_array().max() <= 1.0


def test_scene_grid_bad_input(scenes):
    images = world.render_images(scenes)
    with pytest.raises(ValueError, match="images"):
        plots.scene_grid(images[0])
    with pytest.raises(ValueError, match="images"):
        plots.scene_grid(images.numpy())
    with pytest.raises(ValueError, match="captions"):
        plots.scene_grid(images, ["only one"])
    with pytest.raises(ValueError, match="cols"):
        plots.scene_grid(images, cols=0)


def test_similarity_matrix():
    sim = torch.rand(3, 4)
    fig = plots.similarity_matrix(sim, ["a", "b", "c"], ["w", "x", "y", "z"], title="T")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "T"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["w", "x", "y", "z"]
    assert isinstance(plots.similarity_matrix(sim), Figure)
    with pytest.raises(ValueError, match="sim"):
        plots.similarity_matrix(torch.rand(3))
    with pytest.raises(ValueError, match="sim"):
        plots.similarity_matrix(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="sim"):
        plots.similarity_matrix(torch.full((2, 2), float("nan")))


def test_embedding_map():
    img, txt = torch.randn(10, 8), torch.randn(10, 8)
    fig = plots.embedding_map({"image": img, "text": txt})
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["image", "text"]
    assert len(ax.lines) == 10                    # matched pairs joined
    fig = plots.embedding_map({"image": img, "audio": torch.randn(7, 8)})
    assert len(fig.axes[0].lines) == 0            # different sizes: no pair lines
    assert isinstance(plots.embedding_map({"text": txt}), Figure)


def test_embedding_map_tells_modalities_apart_without_colour():
    """Each modality gets its own marker (colour-blind readers, grey-scale print)."""
    emb = {m: torch.randn(6, 8) for m in ("image", "text", "audio", "video", "depth")}
    ax = plots.embedding_map(emb).axes[0]
    paths = [tuple(map(tuple, c.get_paths()[0].vertices.round(3).tolist())) for c in ax.collections[::2]]
    assert len(set(paths)) == len(emb), "two modalities share a marker"


def test_embedding_map_bad_input():
    with pytest.raises(ValueError, match="embeddings"):
        plots.embedding_map([torch.randn(4, 3)])
    with pytest.raises(ValueError, match="embeddings"):
        plots.embedding_map({})
    with pytest.raises(ValueError, match="embeddings"):
        plots.embedding_map({"image": torch.randn(4, 3), "text": torch.randn(4, 5)})
    with pytest.raises(ValueError, match="embeddings"):
        plots.embedding_map({"image": torch.randn(4)})


def test_filmstrip(scenes):
    video = world.render_video(scenes)[0]
    fig = plots.filmstrip(video, title="moving")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == video.shape[0]
    assert fig.axes[-1].get_title() == f"t={video.shape[0] - 1}"
    assert isinstance(plots.filmstrip((video * 255).to(torch.uint8)), Figure)
    with pytest.raises(ValueError, match="video"):
        plots.filmstrip(world.render_video(scenes))      # a batch, not one video


def test_spectrogram(scenes):
    mel = world.log_mel(world.render_audio(scenes))
    fig = plots.spectrogram(mel[0], title="tone")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "tone"
    fig2, axes = plt.subplots(1, 2)
    assert plots.spectrogram(mel[1], ax=axes[1]) is fig2
    assert len(axes[1].images) == 1
    with pytest.raises(ValueError, match="mel"):
        plots.spectrogram(mel)
    with pytest.raises(ValueError, match="mel"):
        plots.spectrogram(mel[0].tolist())


def test_curves():
    hist = {"loss": [3.0, 2.0, 1.0], "acc": [0.1, 0.5, 0.9], "lr": [1, 1, 1], "time": [0, 1, 2]}
    fig = plots.curves(hist, title="run")
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "acc"]
    fig = plots.curves(hist, keys=["lr"])
    assert [ax.get_title() for ax in fig.axes] == ["lr"]
    with pytest.raises(ValueError, match="history"):
        plots.curves({"acc": [1]})
    with pytest.raises(ValueError, match="history"):
        plots.curves([1, 2, 3])
    with pytest.raises(ValueError, match="keys"):
        plots.curves(hist, keys=["nope"])


def test_scene_grid_integer_images(scenes):
    u8 = (world.render_images(scenes) * 255).round().to(torch.uint8)
    want = plots.scene_grid(u8).axes[0].images[0].get_array()
    got = plots.scene_grid(u8.long()).axes[0].images[0].get_array()
    assert abs(got - want).max() < 1e-6


def test_course_style_gives_each_line_its_own_style():
    import matplotlib.pyplot as plt
    with matplotlib.rc_context():
        plots.course_style()
        fig, ax = plt.subplots()
        lines = [ax.plot([0, 1], [k, k])[0] for k in range(4)]
    assert len({ln.get_linestyle() for ln in lines}) == 4 and len({ln.get_color() for ln in lines}) == 4
    assert lines[0].get_color().lower() == plots.OKABE_ITO[0].lower()
    plt.close(fig)


def test_importing_plots_changes_no_global_setting():
    """The course style is set by calling ``plots.course_style()``, never by an import."""
    import importlib
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        before = plt.rcParams["axes.prop_cycle"]
        importlib.reload(plots)
        assert plt.rcParams["axes.prop_cycle"] == before
        plots.course_style()
        assert plt.rcParams["axes.prop_cycle"] != before


def test_softmax_bars():
    p = torch.softmax(torch.tensor([0.6, 0.4, 0.1, -0.2]) / 0.1, 0)
    fig = plots.softmax_bars(p, title="tau = 0.1")
    ax = fig.axes[0]
    assert len(ax.patches) == 4 and ax.get_title() == "tau = 0.1"
    assert ax.patches[0].get_facecolor() != ax.patches[1].get_facecolor()      # the right answer stands out
    assert ax.patches[0].get_height() == pytest.approx(p[0].item())
    with pytest.raises(ValueError, match="p"):
        plots.softmax_bars(p[None])


def test_slerp_path():
    a, b = torch.tensor([1.0, 0.2, 0.1]), torch.tensor([[-0.3, 1.0, 0.4]])
    fig = plots.slerp_path(a, b, 0.3, n=21)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "lambda = 0.30"
    arc, line = (l.get_ydata() for l in fig.axes[1].get_lines()[:2])     # the norms along each path
    assert len(arc) == 21 and max(abs(arc - 1)) < 1e-5                     # the arc stays on the sphere
    assert min(line) < 0.9 and line[0] == pytest.approx(1) and line[-1] == pytest.approx(1)


@pytest.mark.parametrize("a, b, lam, name", [(torch.ones(4), torch.ones(3), 0.5, "a, b"),
                                             (torch.ones(3), torch.ones(3), 1.5, "lam"),
                                             (torch.ones(3), torch.ones(3), "0.5", "lam"),
                                             ([1.0, 0.0, 0.0], torch.ones(3), 0.5, "a")])
def test_slerp_path_bad_input(a, b, lam, name):
    with pytest.raises(ValueError, match=name):
        plots.slerp_path(a, b, lam)


def test_seed_dots():
    fig, ax = plt.subplots()
    out = plots.seed_dots(ax, {"plain": [0.1, 0.3], "swap": torch.tensor([0.5, 0.6, 0.7])}, "binding",
                          baseline=0.2, labels=["plain", "swap\nnegatives"])
    assert out is ax and ax.get_title() == "binding"
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in dots] == [2, 3]                   # one dot per run
    assert [c.get_offsets()[:, 0].tolist() for c in dots] == [[0, 0], [1, 1, 1]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["plain", "swap\nnegatives"]
    assert any(l.get_linestyle() == "--" for l in ax.get_lines())            # the baseline
    with pytest.raises(ValueError, match="values"):
        plots.seed_dots(ax, {})
    with pytest.raises(ValueError, match="labels"):
        plots.seed_dots(ax, {"plain": [0.1]}, labels=["a", "b"])
    with pytest.raises(ValueError, match="values"):
        plots.seed_dots(ax, {"plain": []})


def test_word_heatmaps_draws_one_panel_per_word():
    import matplotlib
    matplotlib.use("Agg")
    img = world.render_images(world.make_scenes("star", "red"))[0]
    fig = plots.word_heatmaps(img, ["red", "star"], torch.randn(2, 16))
    assert len(fig.axes) >= 3
    with pytest.raises(ValueError, match="words, maps"):
        plots.word_heatmaps(img, ["red"], torch.randn(2, 15))
