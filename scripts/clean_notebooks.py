"""Strip outputs, execution counts and run metadata from notebooks (in place).

    python -m scripts.clean_notebooks notebooks/*.ipynb
"""
import sys

try:
    from scripts import notebook_io
except ImportError:                     # run as a file (python -m scripts.clean_notebooks): its folder is on the path
    import notebook_io


def clean(path) -> bool:
    """Clean one notebook in place; return whether it changed."""
    nb = notebook_io.read(path)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell["metadata"].pop("execution", None)
    nb["metadata"].pop("widgets", None)
    return notebook_io.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(("cleaned " if clean(p) else "clean ") + p)
