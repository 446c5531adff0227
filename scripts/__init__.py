"""The course's command-line tools, run from the repository root as ``python -m scripts.NAME``.

    run_cells        a notebook's code cells as a plain Python program (no Jupyter needed)
    student_copies   the notebooks with every solution replaced by a hinted stub
    assignments      the exercises marked for nbgrader, and its release folder
    build_site       the executed course as static HTML, and its figures
    benchmark        wall time and peak memory of every notebook, render and step throughput
    clean_notebooks  outputs and execution counts stripped
    set_repository   the repository's address written into every notebook's badges and set-up
    lab_settings     JupyterLab without its news pop-up

``notebook_io`` is the one way they read and write a notebook.
"""
