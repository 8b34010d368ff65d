"""Surrogate codes across many batches: one code per person for the whole run, known codes kept."""

from __future__ import annotations

import pyarrow as pa

from airflow_phi_guard.deid.surrogate import MAPPING_SCHEMA, SurrogateCodes


class _MemoryStore:
    """A mapping held in memory, for the lookups alone."""

    def __init__(self, identifiers: list[str], codes: list[str]) -> None:
        self.table = pa.table(
            {"namespace": ["patient"] * len(codes), "identifier": identifiers, "code": codes},
            schema=MAPPING_SCHEMA,
        )

    def describe(self) -> str:
        return "memory"

    def load(self, namespace: str) -> pa.Table:
        return self.table.select(["identifier", "code"])

    def add(self, namespace: str, new: pa.Table) -> None:
        self.table = pa.concat_tables([self.table, new])


def test_a_person_keeps_one_code_over_many_batches_and_known_codes_stay() -> None:
    codes = SurrogateCodes(_MemoryStore(["known-1", "known-2"], ["c" * 32, "d" * 32]), "patient")

    seen: dict[str, str] = {}
    # more batches than the run keeps chunks of new codes, each with people new and seen before
    for batch in range(30):
        people = [f"p{batch}", f"p{batch // 2}", "known-2", f"p{batch}", None, "known-1"]
        for person, code in zip(people, codes.codes_for(pa.array(people)).to_pylist(), strict=True):
            if person is None:
                assert code is None
                continue
            assert seen.setdefault(person, code) == code

    assert seen["known-1"] == "c" * 32
    assert seen["known-2"] == "d" * 32
    assert codes.new_codes == 30
    assert len(set(seen.values())) == len(seen)
