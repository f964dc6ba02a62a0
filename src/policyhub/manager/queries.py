"""Running the query compiler's plans: a list's page, and its total only when the page cannot
tell it; a stat's pipeline."""

from __future__ import annotations

from mongoengine import Document

from policyhub.manager.database import aggregate, collection, embedded
from policyhub.query import ListPlan, StatPlan, count_of, in_order, page_total, unpack_stat

# The deepest page read as one sorted run per part: each part returns up to skip + limit
# documents, so a deeper one is read in one query.
MERGED_PAGE_MAX = 1000


def run_list(
    document: type[Document],
    plan: ListPlan,
    joins: tuple[dict, ...] = (),
    counted_apart: tuple[ListPlan, ...] = (),
) -> tuple[list[dict], int]:
    """(the page's documents, the total). `joins` (e.g. a $lookup) run after the page, on its
    documents only (on a server, on each part's first results). The total is a count of its own
    that an index can answer, skipped when the page ends the results; a count_only plan reads the
    total alone. `counted_apart`: plans of disjoint parts of the plan's scope whose counts add up
    to its total and whose pages merge into its page (each an equality on domain_id, which some
    MongoDB-compatible servers serve by index where they scan for `$in`)."""

    def total() -> int:
        return sum(count_of(aggregate(document, part.count_pipeline)) for part in counted_apart or (plan,))

    if plan.count_only:
        return [], total()
    docs = _merged_page(document, plan, joins, counted_apart)
    if docs is None:
        docs = aggregate(document, [*plan.pipeline, *joins])
    known = page_total(plan, len(docs))
    return docs, total() if known is None else known


def _merged_page(
    document: type[Document], plan: ListPlan, joins: tuple[dict, ...], parts: tuple[ListPlan, ...]
) -> list[dict] | None:
    """The page from each part's first results, merged in the server's order; None where it is
    read in one query instead. Servers only: a server that plans `domain_id: {$in: [...]}` as a
    collection scan would make a domain's list cost every domain's documents (the embedded store
    serves `$in` from its own indexes)."""
    end = plan.skip + plan.limit
    if not parts or end > MERGED_PAGE_MAX or embedded(collection(document)):
        return None
    tops = [part.top for part in parts]
    if any(top is None for top in tops):
        return None
    merged = in_order([aggregate(document, [*top, *joins]) for top in tops if top is not None], plan.sort)
    return None if merged is None else merged[plan.skip : end]


def run_stat(document: type[Document], plan: StatPlan) -> tuple[list, int | None]:
    return unpack_stat(plan, aggregate(document, plan.pipeline))
