"""The query language: SpaceONE Query/StatisticsQuery dicts compiled to MongoDB pipelines."""

from policyhub.query.compiler import (
    ListPlan,
    QuerySchema,
    StatPlan,
    compile_list,
    compile_stat,
    count_of,
    page_total,
    unpack_stat,
)
from policyhub.query.keys import Join, QueryKeys
from policyhub.query.ordering import in_order
from policyhub.query.timeexpr import TimeExprError, parse_iso_datetime, parse_timediff

__all__ = [
    "Join",
    "QueryKeys",
    "ListPlan",
    "QuerySchema",
    "StatPlan",
    "TimeExprError",
    "compile_list",
    "compile_stat",
    "count_of",
    "in_order",
    "page_total",
    "parse_iso_datetime",
    "parse_timediff",
    "unpack_stat",
]
