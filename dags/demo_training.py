"""Train the demo's readmission model on the governed set: the only data a model in this project may see."""

from __future__ import annotations

import os
from pathlib import Path

CATEGORICAL = ["ENCOUNTERCLASS", "GENDER", "RACE", "ETHNICITY", "MARITAL", "ZIP3"]
NUMERIC = ["AGE", "ENCOUNTER_YEAR", "BASE_ENCOUNTER_COST", "TOTAL_CLAIM_COST", "PAYER_COVERAGE", "INCOME"]
LABEL = "READMITTED_30D"
GROUP = "PATIENT_KEY"


def train_readmission_model(
    governed: str | os.PathLike[str], model_path: str | os.PathLike[str]
) -> dict[str, float]:
    """Fit a logistic regression, holding out a quarter of the patients; return value-free metrics.

    :param governed: the governed Parquet file.
    :param model_path: where to write the fitted pipeline (joblib).
    """
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.read_parquet(governed)
    features = frame[CATEGORICAL + NUMERIC].astype({name: "object" for name in CATEGORICAL})
    labels = frame[LABEL].astype(int)
    train, test = next(
        GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=7).split(
            features, labels, groups=frame[GROUP]
        )
    )

    pipeline = make_pipeline(
        ColumnTransformer(
            [
                (
                    "categorical",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="missing"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    CATEGORICAL,
                ),
                ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
            ]
        ),
        LogisticRegression(max_iter=1000, class_weight="balanced"),
    )
    pipeline.fit(features.iloc[train], labels.iloc[train])

    scores = pipeline.predict_proba(features.iloc[test])[:, 1]
    target = Path(model_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, target)
    return {
        "training_rows": float(len(train)),
        "test_rows": float(len(test)),
        "test_auc": round(float(roc_auc_score(labels.iloc[test], scores)), 4),
    }


def score_readmission_model(
    model_path: str | os.PathLike[str], governed: str | os.PathLike[str], scores: str | os.PathLike[str]
) -> int:
    """Score the governed set with the trained model; write one risk per row and return the row count.

    :param model_path: the fitted pipeline (joblib).
    :param governed: the governed Parquet file.
    :param scores: where to write the scores (Parquet: ``PATIENT_KEY``, a surrogate code, and the risk).
    """
    import joblib
    import pandas as pd

    pipeline = joblib.load(model_path)
    frame = pd.read_parquet(governed, columns=[GROUP, *CATEGORICAL, *NUMERIC])
    features = frame[CATEGORICAL + NUMERIC].astype({name: "object" for name in CATEGORICAL})
    result = pd.DataFrame({GROUP: frame[GROUP], "READMISSION_RISK": pipeline.predict_proba(features)[:, 1]})
    target = Path(scores)
    target.parent.mkdir(parents=True, exist_ok=True)
    result.to_parquet(target, index=False)
    return len(result)
