"""Export downloads for the researcher (admin session required)."""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import select

from altcap.study.db import Study
from altcap.study.deps import AdminDep, DbDep, PageError, StateDep
from altcap.study.export import (
    PARTICIPANT_COLUMNS,
    RESPONSE_COLUMNS,
    build_participant_rows,
    build_response_rows,
    format_csv,
)
from altcap.study.freeze import describe_design

router = APIRouter(prefix="/admin/export", tags=["export"])


@router.get("/{name}")
def download(name: str, _session: AdminDep, db: DbDep, state: StateDep) -> Response:
    """responses.csv, responses.json, participants.csv or study.json, as an attachment."""
    likert_ids = {item.id for item in state.study.config.likert_items}
    if name == "responses.csv":
        body, media = format_csv(build_response_rows(db, likert_ids), RESPONSE_COLUMNS), "text/csv"
    elif name == "responses.json":
        body, media = json.dumps(build_response_rows(db, likert_ids), ensure_ascii=False), "application/json"
    elif name == "participants.csv":
        body, media = format_csv(build_participant_rows(db), PARTICIPANT_COLUMNS), "text/csv"
    elif name == "study.json":
        body, media = json.dumps(describe_design(db.scalars(select(Study)).one())), "application/json"
    else:
        raise PageError(
            404, "No such export", "Exports: responses.csv, responses.json, participants.csv, study.json."
        )
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    return Response(body, media_type=f"{media}; charset=utf-8", headers=headers)
