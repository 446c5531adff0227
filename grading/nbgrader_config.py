"""nbgrader's configuration for the course (run nbgrader from this folder; see README.md here).

The student versions nbgrader writes carry the same stubs as `make student`: nbgrader's
ClearSolutions is swapped for one that calls scripts/student_copies.py, so each stub raises
NotImplementedError with its exercise's title and hint instead of a bare one.
"""
import os
import sys
from pathlib import Path

from nbgrader.converters import GenerateAssignment
from nbgrader.preprocessors import ClearSolutions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))    # nbgrader runs from grading/
from scripts import student_copies  # noqa: E402


class HintedStubs(ClearSolutions):
    """ClearSolutions with the course's stubs (``student_copies.stub_cell``)."""

    def preprocess(self, nb, resources):
        self._hints = student_copies.hints(nb.cells)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        self._hint = self._hints.get(cell_index)
        if cell.cell_type == "markdown":          # the badges open the instructor's notebook: a note instead
            cell.source = student_copies.student_markdown(cell.source)
        return super().preprocess_cell(cell, resources, cell_index)

    def _replace_solution_region(self, cell, language):
        if cell.cell_type != "code" or self._hint is None:
            return super()._replace_solution_region(cell, language)
        cell.source = student_copies.stub_cell(cell.source, self._hint)
        return True


# autograding runs each lesson as the course's tests do: the quick profile (a GPU grading server
# would otherwise switch to full), offline; set any of these before calling nbgrader to change it
for name, value in {"TUTORLIB_PROFILE": "quick", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg", "TQDM_MININTERVAL": "5"}.items():
    os.environ.setdefault(name, value)          # the kernels nbgrader starts inherit them

c = get_config()  # noqa: F821 (nbgrader defines it)
c.CourseDirectory.course_id = "cross-modal-alignment"
c.GenerateAssignment.preprocessors = [HintedStubs if p is ClearSolutions else p
                                      for p in GenerateAssignment.class_traits()["preprocessors"].default()]
# a lesson trains models: nbgrader's 30 s per cell is too short (the notebooks' own limit is 900 s)
c.Execute.timeout = 900
c.ExecutePreprocessor.timeout = 900
