"""`gristmill dataman build SPEC`: the teacher rates a sample, then the students are trained on its labels.

Labels are kept in <output>/labels.parquet (id, text, ratings, domain, error) so students can be
retrained without asking the teacher again (its answers are also cached by the teacher itself).
The teacher's key is read from the environment variable named by `teacher.api_key_env` and is
written nowhere: not in the labels, the cache, the report or the printed summary.
"""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ConfigDict, Field

from pipelines.config import load_yaml
from pipelines.readers import SourceConfig
from pipelines.sample import sample_texts
from scorers._config import StrictModel
from scorers.dataman.students import train_students
from scorers.dataman.teacher import Teacher, TeacherConfig


class TeacherFailed(RuntimeError):
    """The teacher rated none of the sample (dead endpoint, a redirect, every answer malformed)."""


class StudentSpec(StrictModel):
    lr: float = 0.5
    epoch: int = 25
    bucket: int = 200_000


class DatamanSpec(StrictModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # never echo a key pasted into the spec

    sample: SourceConfig
    max_docs: int = Field(5000, ge=10)
    teacher: TeacherConfig
    students: StudentSpec = StudentSpec()
    output: str  # a folder: labels.parquet, one model per rating and the domain, report.json


def load_spec(path: str) -> DatamanSpec:
    return load_yaml(path, DatamanSpec)


def build(spec: DatamanSpec) -> dict:
    teacher = Teacher(spec.teacher)  # a missing key fails here, before the sample is read
    docs = sample_texts(spec.sample, spec.max_docs)
    results = teacher.rate([{"id": i, "text": t} for i, t in docs], progress=True)
    Path(spec.output).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "id": [i for i, _ in docs], "text": [t for _, t in docs],
        "ratings": [json.dumps(r["ratings"]) if r["ratings"] else None for r in results],
        "domain": [r["domain"] for r in results], "error": [r["error"] for r in results],
    }), f"{spec.output}/labels.parquet", compression="zstd")
    if not any(r["ratings"] for r in results):
        errors = list(dict.fromkeys(r["error"] for r in results if r["error"]))
        raise TeacherFailed(f"the teacher rated none of the {len(results)} documents (errors in "
                            f"{spec.output}/labels.parquet); first errors: {'; '.join(errors[:3])}")
    s = spec.students
    return train_students([t for _, t in docs], results, spec.output, lr=s.lr, epoch=s.epoch, bucket=s.bucket)
