"""Running the query compiler's plans: a list's page, and its total only when the page cannot
tell it; a stat's pipeline."""

from __future__ import annotations

from mongoengine import Document

from policyhub.manager.database import aggregate
from policyhub.query import ListPlan, StatPlan, count_of, page_total, unpack_stat


def run_list(document: type[Document], plan: ListPlan, joins: tuple[dict, ...] = ()) -> tuple[list[dict], int]:
    """(the page's documents, the total). `joins` (e.g. a $lookup) run after the page, on its
    documents only. The total is a count of its own that an index can answer, skipped when the
    page ends the results; a count_only plan reads the total alone."""
    if plan.count_only:
        return [], count_of(aggregate(document, plan.count_pipeline))
    docs = aggregate(document, [*plan.pipeline, *joins])
    total = page_total(plan, len(docs))
    if total is None:
        total = count_of(aggregate(document, plan.count_pipeline))
    return docs, total


def run_stat(document: type[Document], plan: StatPlan) -> tuple[list, int | None]:
    return unpack_stat(plan, aggregate(document, plan.pipeline))
