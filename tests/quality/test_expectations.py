"""The product's Great Expectations expectations, run by GX itself on pandas frames: each answers its rule,
the same whether pandas holds the data in NumPy or Arrow dtypes, and reports counts, never values."""

from __future__ import annotations

import json

import great_expectations as gx
import pandas as pd
import pyarrow as pa
import pytest

from airflow_phi_guard.quality import expectations as product
from airflow_phi_guard.quality.results import RESULT_FORMAT

CANARY_SUBJECT = "CANARY-SUBJECT-5151"
REGISTRY_HEADER = "subject_id,basis,purposes,granted_at,expires_at,revoked_at,reference"


def _run(frame: pd.DataFrame, *expectations) -> list:
    """The results of the expectations on the frame, in the order given."""
    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("test").add_dataframe_asset("test")
    definition = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name="test"))
    for position, expectation in enumerate(expectations):
        expectation.meta = {"position": position}
        suite.add_expectation(expectation)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="test", data=definition, suite=suite)
    )
    result = validation.run(batch_parameters={"dataframe": frame}, result_format=dict(RESULT_FORMAT))
    return sorted(result.results, key=lambda item: item.expectation_config.meta["position"])


def _both_dtypes(table: pa.Table) -> list[pd.DataFrame]:
    return [table.to_pandas(), table.to_pandas(types_mapper=pd.ArrowDtype)]


class TestAllowlist:
    def test_gx_set_check_without_exact_match_lets_an_extra_ssn_column_pass(self):
        # The trap of the issue: the natural GX check passes a table with an extra SSN column.
        frame = pa.table({"AGE": [42], "ZIP3": ["681"], "SSN": ["123-45-6789"]}).to_pandas()

        (natural, ours) = _run(
            frame,
            gx.expectations.ExpectTableColumnsToMatchSet(column_set=["AGE", "ZIP3"], exact_match=False),
            product.ExpectTableColumnsToMatchAllowlist(allowlist=["AGE", "ZIP3"]),
        )

        assert natural.success is True
        assert ours.success is False
        assert ours.result["details"] == {"extra": ["SSN"], "missing": []}

    @pytest.mark.parametrize(
        ("columns", "success", "extra", "missing"),
        [
            (["AGE", "ZIP3"], True, [], []),
            (["ZIP3", "AGE"], True, [], []),  # order is not part of the rule
            (["AGE"], False, [], ["ZIP3"]),  # an allowlisted output missing
            (["AGE", "ZIP3", "NOTE"], False, ["NOTE"], []),
        ],
    )
    def test_columns_within_the_allowlist_and_every_output_present(self, columns, success, extra, missing):
        frame = pd.DataFrame({name: [1] for name in columns})

        (result,) = _run(frame, product.ExpectTableColumnsToMatchAllowlist(allowlist=["AGE", "ZIP3"]))

        assert result.success is success
        assert result.result["details"] == {"extra": extra, "missing": missing}


class TestNoIdentifiers:
    @pytest.mark.parametrize(
        ("values", "found"),
        [
            (["Well child visit (procedure)", None, "410620009"], {}),
            (["note: SSN 123-45-6789", None, "x"], {"G": 1}),
            (["call 402-555-0199", "mail alice368@example.org", None], {"D": 1, "F": 1}),
        ],
    )
    def test_the_detectors_find_identifiers_and_count_nulls_as_missing(self, values, found):
        table = pa.table({"NOTE": pa.array(values, pa.string())})

        for frame in _both_dtypes(table):
            (result,) = _run(frame, product.ExpectColumnValuesToContainNoIdentifiers(column="NOTE"))

            assert result.success is (not found)
            assert result.result["details"]["found"] == found
            assert result.result["missing_count"] == 1
            assert "123-45-6789" not in json.dumps(result.to_json_dict())

    def test_a_number_column_is_reported_as_not_scanned(self):
        frame = pa.table({"INCOME": pa.array([52000, None], pa.int64())}).to_pandas()

        (result,) = _run(frame, product.ExpectColumnValuesToContainNoIdentifiers(column="INCOME"))

        assert result.success is True
        assert result.result["details"] == {"found": {}, "scanned": False}

    def test_a_limited_detector_list_leaves_the_others_out(self):
        frame = pd.DataFrame({"NOTE": ["ZIP 68504"]})

        every, without_zip = _run(
            frame,
            product.ExpectColumnValuesToContainNoIdentifiers(column="NOTE"),
            product.ExpectColumnValuesToContainNoIdentifiers(
                column="NOTE",
                detectors=[detector.name for detector in product.DETECTORS if detector.name != "zip-code"],
            ),
        )

        assert every.success is False
        assert without_zip.success is True

    def test_an_unknown_detector_name_is_refused(self):
        with pytest.raises(ValueError, match="no built-in value detector is named wishful"):
            product.detectors_named(["wishful"])


class TestZip3:
    # 164.514(b)(2)(i)(B), Census 2020 list of REGULATORY.md: 036 and 893 are restricted, 681 is not.
    @pytest.mark.parametrize(
        ("values", "success", "counts"),
        [
            (["681", "000", None], True, {"malformed": 0, "unknown_prefix": 0, "restricted_kept": 0}),
            (["681", "036", None], False, {"malformed": 0, "unknown_prefix": 0, "restricted_kept": 1}),
            (["893", "021", None], False, {"malformed": 0, "unknown_prefix": 0, "restricted_kept": 1}),
            (["6813", "68", None], False, {"malformed": 2, "unknown_prefix": 0, "restricted_kept": 0}),
            (["001", "681", None], False, {"malformed": 0, "unknown_prefix": 1, "restricted_kept": 0}),
        ],
    )
    def test_existing_prefixes_with_restricted_ones_as_000(self, values, success, counts):
        table = pa.table({"ZIP3": pa.array(values, pa.string())})

        for frame in _both_dtypes(table):
            (result,) = _run(
                frame, product.ExpectColumnValuesToBeValidZip3(column="ZIP3", vintage="census-2020")
            )

            assert result.success is success
            assert result.result["details"] == counts
            assert result.result["missing_count"] == 1

    def test_the_vintage_decides_which_prefixes_are_restricted(self):
        # 830 is restricted under Census 2000 only; 753 under Census 2020 only.
        frame = pd.DataFrame({"ZIP3": ["830", "753"]})

        census_2000, census_2020 = _run(
            frame,
            product.ExpectColumnValuesToBeValidZip3(column="ZIP3", vintage="census-2000"),
            product.ExpectColumnValuesToBeValidZip3(column="ZIP3", vintage="census-2020"),
        )

        assert census_2000.result["details"]["restricted_kept"] == 1
        assert census_2020.result["details"]["restricted_kept"] == 1


class TestAges:
    @pytest.mark.parametrize(
        ("values", "success", "counts"),
        [
            ([0, 42, 90, None], True, {"above_top_age": 0, "negative": 0, "not_whole_years": 0}),
            ([95, 42, 89, None], False, {"above_top_age": 1, "negative": 0, "not_whole_years": 0}),
            ([-1, 42, 89, None], False, {"above_top_age": 0, "negative": 1, "not_whole_years": 0}),
        ],
    )
    def test_ages_stop_at_90_whatever_the_dtype(self, values, success, counts):
        # With a null, NumPy dtypes turn the int32 column into float64; Arrow dtypes keep int32.
        table = pa.table({"AGE": pa.array(values, pa.int32())})
        numpy_frame, arrow_frame = _both_dtypes(table)
        assert numpy_frame["AGE"].dtype == "float64"

        for frame in (numpy_frame, arrow_frame):
            (result,) = _run(frame, product.ExpectColumnAgesToBeCapped(column="AGE"))

            assert result.success is success
            assert result.result["details"] == counts
            assert result.result["missing_count"] == 1

    def test_a_fraction_is_not_an_age_in_whole_years(self):
        (result,) = _run(
            pd.DataFrame({"AGE": [42.5, 30.0]}), product.ExpectColumnAgesToBeCapped(column="AGE")
        )

        assert result.success is False
        assert result.result["details"]["not_whole_years"] == 1

    def test_text_is_not_an_age(self):
        (result,) = _run(pd.DataFrame({"AGE": ["42"]}), product.ExpectColumnAgesToBeCapped(column="AGE"))

        assert result.success is False
        assert result.result["details"] == {"not_a_number": 1}


class TestKAnonymity:
    @pytest.mark.parametrize(
        ("zip3", "ages", "k_min", "success", "k"),
        [
            (["681", "681", "021", "021"], [40, 40, 50, 50], 2, True, 2),
            (["681", "681", "021", "021"], [40, 40, 50, 51], 2, False, 1),
            # A missing value is a value of its own (deid/risk.py): two missing ZIP3s form one class.
            ([None, None, "021", "021"], [40, 40, 50, 50], 2, True, 2),
            (["681", "681", "681", "021"], [40, 40, 40, 50], 3, False, 1),
        ],
    )
    def test_every_class_holds_at_least_k_rows(self, zip3, ages, k_min, success, k):
        table = pa.table({"ZIP3": pa.array(zip3, pa.string()), "AGE": pa.array(ages, pa.int32())})

        for frame in _both_dtypes(table):
            (result,) = _run(
                frame,
                product.ExpectTableKAnonymityToBeAtLeast(quasi_identifiers=["ZIP3", "AGE"], k_min=k_min),
            )

            assert result.success is success
            assert result.result["observed_value"] == k

    def test_a_missing_quasi_identifier_column_fails(self):
        (result,) = _run(
            pd.DataFrame({"AGE": [1, 1]}),
            product.ExpectTableKAnonymityToBeAtLeast(quasi_identifiers=["ZIP3", "AGE"], k_min=2),
        )

        assert result.success is False
        assert result.result["details"] == {"missing_columns": ["ZIP3"]}

    def test_a_table_of_classes_is_weighted_by_its_row_counts(self):
        frame = pd.DataFrame({"ZIP3": ["681", "021"], "rows": [5, 1]})

        (result,) = _run(
            frame,
            product.ExpectTableKAnonymityToBeAtLeast(
                quasi_identifiers=["ZIP3"], k_min=2, row_count_column="rows"
            ),
        )

        assert result.success is False
        assert result.result["details"] == {"rows": 6, "classes": 2, "k": 1, "classes_below_k": 1}


class TestConsent:
    @pytest.fixture
    def registry(self, tmp_path):
        path = tmp_path / "consent.csv"
        rows = [
            "p-1,research-authorization,model-training,2025-01-01,,,AUTH-1",
            "p-2,irb-waiver,model-training,2025-01-01,,,IRB-1",
            # revoked before the as-of date: from then on p-3 may not be used
            "p-3,research-authorization,model-training,2025-01-01,,2026-06-01,AUTH-3",
            f"{CANARY_SUBJECT},research-authorization,model-training,2025-01-01,,2026-06-01,AUTH-4",
        ]
        path.write_text(REGISTRY_HEADER + "\n" + "\n".join(rows) + "\n")
        return str(path)

    def _expectation(self, registry: str) -> product.ExpectColumnSubjectsToHaveAdmittedConsent:
        return product.ExpectColumnSubjectsToHaveAdmittedConsent(
            column="PATIENT",
            consent_registry=registry,
            bases=["research-authorization", "irb-waiver"],
            purpose="model-training",
            as_of="2026-12-01",
        )

    def test_every_subject_admitted_passes(self, registry):
        (result,) = _run(pd.DataFrame({"PATIENT": ["p-1", "p-2", "p-1"]}), self._expectation(registry))

        assert result.success is True
        assert result.result["details"]["rows_admitted"] == 3
        assert result.result["details"]["admitted_subjects_by_basis"] == {
            "research-authorization": 1,
            "irb-waiver": 1,
        }

    def test_a_revoked_or_unknown_subject_fails_with_counts_and_no_id(self, registry):
        frame = pd.DataFrame({"PATIENT": ["p-1", "p-3", CANARY_SUBJECT, "p-9", None]})

        (result,) = _run(frame, self._expectation(registry))

        assert result.success is False
        assert result.result["observed_value"] == 4
        assert sum(result.result["details"]["rows_excluded"].values()) == 4
        assert CANARY_SUBJECT not in json.dumps(result.to_json_dict())


def test_every_product_expectation_renders_a_sentence_of_its_arguments_only():
    expectations = [
        product.ExpectTableColumnsToMatchAllowlist(allowlist=["AGE"]),
        product.ExpectColumnValuesToContainNoIdentifiers(column="NOTE"),
        product.ExpectColumnValuesToBeValidZip3(column="ZIP3", vintage="census-2020"),
        product.ExpectColumnAgesToBeCapped(column="AGE"),
        product.ExpectTableKAnonymityToBeAtLeast(quasi_identifiers=["AGE"], k_min=5),
        product.ExpectColumnSubjectsToHaveAdmittedConsent(
            column="PATIENT", consent_registry="c.csv", bases=["irb-waiver"], purpose="p", as_of="2026-12-01"
        ),
    ]

    assert sorted(type(expectation).expectation_type for expectation in expectations) == sorted(
        product.PRODUCT_EXPECTATIONS
    )
    for expectation in expectations:
        (content,) = type(expectation)._prescriptive_renderer(configuration=expectation.configuration)
        assert content.string_template["template"].endswith(".")
