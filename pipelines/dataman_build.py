"""`gristmill dataman build SPEC`: the teacher rates a sample, then the students are trained on its labels.

Labels are kept in <output>/labels.parquet (id, text, ratings, domain, error) so students can be
retrained without asking the teacher again (its answers are also cached by the teacher itself).
"""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from pipelines.config import load_yaml
from pipelines.readers import SourceConfig
from pipelines.sample import sample_texts
from scorers._config import StrictModel
from scorers.dataman.students import train_students
from scorers.dataman.teacher import Teacher, TeacherConfig


class StudentSpec(StrictModel):
    lr: float = 0.5
    epoch: int = 25
    bucket: int = 200_000


class DatamanSpec(StrictModel):
    sample: SourceConfig
    max_docs: int = Field(5000, ge=10)
    teacher: TeacherConfig
    students: StudentSpec = StudentSpec()
    output: str  # a folder: labels.parquet, one model per rating and the domain, report.json


def load_spec(path: str) -> DatamanSpec:
    return load_yaml(path, DatamanSpec)


def build(spec: DatamanSpec) -> dict:
    docs = sample_texts(spec.sample, spec.max_docs)
    results = Teacher(spec.teacher).rate([{"id": i, "text": t} for i, t in docs], progress=True)
    Path(spec.output).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "id": [i for i, _ in docs], "text": [t for _, t in docs],
        "ratings": [json.dumps(r["ratings"]) if r["ratings"] else None for r in results],
        "domain": [r["domain"] for r in results], "error": [r["error"] for r in results],
    }), f"{spec.output}/labels.parquet", compression="zstd")
    s = spec.students
    return train_students([t for _, t in docs], results, spec.output, lr=s.lr, epoch=s.epoch, bucket=s.bucket)
