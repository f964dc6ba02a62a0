"""Running the query compiler's plans: a list's page, and its total only when the page cannot
tell it; a stat's pipeline."""

from __future__ import annotations

from mongoengine import Document

from policyhub.manager.database import aggregate
from policyhub.query import ListPlan, StatPlan, count_of, page_total, unpack_stat


def run_list(
    document: type[Document],
    plan: ListPlan,
    joins: tuple[dict, ...] = (),
    counted_apart: tuple[ListPlan, ...] = (),
) -> tuple[list[dict], int]:
    """(the page's documents, the total). `joins` (e.g. a $lookup) run after the page, on its
    documents only. The total is a count of its own that an index can answer, skipped when the
    page ends the results; a count_only plan reads the total alone. `counted_apart`: plans of
    disjoint parts of the plan's scope whose counts add up to its total (each an equality on
    domain_id, which some MongoDB-compatible servers serve by index where they scan for `$in`)."""

    def total() -> int:
        return sum(count_of(aggregate(document, part.count_pipeline)) for part in counted_apart or (plan,))

    if plan.count_only:
        return [], total()
    docs = aggregate(document, [*plan.pipeline, *joins])
    known = page_total(plan, len(docs))
    return docs, total() if known is None else known


def run_stat(document: type[Document], plan: StatPlan) -> tuple[list, int | None]:
    return unpack_stat(plan, aggregate(document, plan.pipeline))
