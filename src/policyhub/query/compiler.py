"""Compile SpaceONE `Query` / `StatisticsQuery` dicts into MongoDB aggregation pipelines.

Pure: no I/O, no database driver. The input is untrusted (a MessageToDict of the
request, or a hand-written dict); every malformed part raises InvalidArgument whose
field path names it (`query.filter[1].operator`), and no other exception escapes.
User input only ever becomes data: keys are validated field paths, values are
checked for `$` keys, regexes are escaped or kept to a subset that cannot backtrack
catastrophically (regex_safety), and values inside
aggregation expressions are wrapped in `$literal`.

Every key a query names is a field of the resource (`QuerySchema.keys`, see keys.py), compiled
to where it is stored; any other key is InvalidArgument listing the valid ones. A key of a joined
collection (a policy's `repository_info.name`) runs the join's stages right after the first
`$match`, and the conditions on it in a second `$match` after them.

The caller's `scope` filter is trusted and its fields open the first `$match`, so every
document any pipeline touches is inside the caller's scope, and the index that starts with
the scope's fields (domain_id first) serves the match.

A list is two pipelines: the page (`$match`, `$sort`, `$skip`, `$limit`, then any projection,
so whatever a caller appends, e.g. a `$lookup`, runs on the page only and an index can serve
the sort), and the total (the same `$match` and a `$count`), run only when the page cannot
tell it (`page_total`). A plan also has its `top`: the first skip + limit results in order, so
that a caller can read disjoint parts of a scope apart and merge their pages (`ordering`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from policyhub.errors import InvalidArgument, RequiredParameter
from policyhub.query import regex_safety
from policyhub.query.keys import Join, QueryKeys, Resolved, UnknownKey, outputs
from policyhub.query.timeexpr import TimeExprError, parse_iso_datetime, parse_timediff

# A MongoDB document (filter, stage, projection) as the compiler builds it.
Doc = dict[str, Any]

# Caps on the size of a query; exceeding one is InvalidArgument.
MAX_FILTERS = 100  # items per `filter`, `filter_or` and group-field `conditions` list
MAX_FIELDS = 100  # entries of `only`, group keys/fields/sub-fields, project fields, `match` objects
MAX_SORT_KEYS = 31  # MongoDB's $sort takes 32 keys; one is the `_id` tie-breaker
MAX_AGGREGATE_STAGES = 50  # stages of `aggregate`
MAX_VALUES = 1000  # elements of a list inside a filter value
# SpaceONE's name for a list operator (in, not_in, contain_in, regex_in, ...) given a non-list value.
LIST_VALUE_TYPE = "ERROR_OPERATOR_LIST_VALUE_TYPE"
MAX_VALUE_DEPTH = 32  # nesting of lists/objects inside a filter value
MAX_KEY_LENGTH = 256  # characters of a key, a name or a date_format
MAX_REGEX_LENGTH = 1024  # characters of a `contain` value or the keyword (regex patterns: regex_safety)
# Total estimated work of one query's regexes and text searches per document string, in
# regex_safety's cost units: as much as searching 8192 pattern characters (the keyword,
# 1024 characters in 4 fields, is half of it).
MAX_REGEX_COST = regex_safety.subject_cost(8192)
MAX_KEYWORD_TOKENS = 32  # whitespace-separated words of `keyword`

_INT64_MAX = 2**63 - 1
_COUNT = "n"  # name of the $count output inside the pipelines this module builds
_ROOT = "query"

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DATE_FORMAT = re.compile(r"(?:%[YmdHMSLjwuUVGZz%]|[^%$\x00])*")
_LIST_FIELDS = frozenset({"filter", "filter_or", "keyword", "sort", "page", "only", "minimal", "count_only"})
_STAT_FIELDS = frozenset({"filter", "filter_or", "keyword", "aggregate", "distinct", "page"})


@dataclass(frozen=True)
class QuerySchema:
    keys: QueryKeys
    keyword_fields: tuple[str, ...]
    minimal_fields: tuple[str, ...]
    datetime_fields: frozenset[str] = frozenset()
    default_sort: tuple[tuple[str, bool], ...] = ()
    max_limit: int = 1000

    def __post_init__(self) -> None:
        # The schema's own keys are stored fields: a mistake here is the program's, not a caller's.
        own = (*self.keyword_fields, *self.minimal_fields, *(key for key, _ in self.default_sort))
        for key in (*own, *self.datetime_fields):
            if key == "_id":  # every document's, a query cannot name it
                continue
            try:
                resolved = self.keys.resolve(key)
            except UnknownKey as error:
                raise ValueError(f"the query schema names an undeclared key: {error}") from None
            if key in own and (resolved.path != key or resolved.join):
                raise ValueError(f"the query schema's {key!r} is not a stored field")


@dataclass(frozen=True)
class ListPlan:
    # The page; a caller appends its joins after it.
    pipeline: list[Doc]
    # The total: the page's $match and a $count.
    count_pipeline: list[Doc]
    count_only: bool
    skip: int
    limit: int
    # The page's order ({path: 1 or -1}, `_id` last).
    sort: Doc
    # The first skip + limit results in that order, projected, to be merged with another part's
    # (`ordering.in_order`) and paged by the caller; None when the projection leaves out a sort key.
    top: list[Doc] | None


@dataclass(frozen=True)
class StatPlan:
    pipeline: list[Doc]
    paged: bool
    distinct: bool = False  # results are documents {"_id": value}; unpack_stat returns the values


class _RegexBudget:
    """The regex work a query has spent so far: each pattern is cheap on its own, but a
    query could send thousands of them against every document."""

    def __init__(self) -> None:
        self.spent = 0

    def spend(self, cost: int, path: str) -> None:
        self.spent += cost
        if self.spent > MAX_REGEX_COST:
            raise InvalidArgument(
                path,
                "makes the query's regexes and text searches too expensive together; "
                "use fewer or shorter ones, or anchor regexes with ^",
            )


@dataclass
class _Context:
    schema: QuerySchema
    now: datetime
    regex_budget: _RegexBudget = field(default_factory=_RegexBudget)
    # The keys the next part may name: the resource's, then a stat stage's outputs.
    keys: QueryKeys = field(init=False)
    # The joins the query's keys need, in the order first named; `join_uses` counts the keys
    # that named one, so a caller can tell whether a part did.
    joins: list[Join] = field(default_factory=list)
    join_uses: int = 0

    def __post_init__(self) -> None:
        self.keys = self.schema.keys

    def join_stages(self) -> list[Doc]:
        return [stage for join in self.joins for stage in join.stages]


# ---------------------------------------------------------------- public API


def compile_list(query: Doc | None, schema: QuerySchema, scope: Doc, *, now: datetime | None = None) -> ListPlan:
    query = _root(query, _LIST_FIELDS)
    ctx = _Context(schema, now or datetime.now(timezone.utc))
    match, joined = _match(query, scope, ctx)
    # The count joins only for conditions on joined keys (the sort's joins are no concern of it).
    filtered = [*ctx.join_stages(), *joined] if joined else []
    sort: Doc = {"$sort": _list_sort(query.get("sort"), ctx)}
    skip, limit = _page(query.get("page"), schema)
    projection = _projection(query, ctx)
    head = [match, *ctx.join_stages(), *joined, sort]
    page: list[Doc] = [*head, {"$skip": skip}, {"$limit": limit}, *projection]
    projected = [path for stage in projection for path in stage["$project"]]
    sorted_by = sort["$sort"]
    top = [*head, {"$limit": skip + limit}, *projection] if _keeps(projected, sorted_by) else None
    count_only = _flag(query, "count_only", _ROOT)
    return ListPlan(
        page,
        [match, *filtered, {"$count": _COUNT}],
        count_only=count_only,
        skip=skip,
        limit=limit,
        sort=sorted_by,
        top=top,
    )


def _keeps(projected: list[str], sort: Doc) -> bool:
    """Whether documents projected to these paths (all of them when none; `_id` always) still
    hold every sort key."""
    return not projected or all(
        path == "_id" or any(path == kept or path.startswith(kept + ".") for kept in projected) for path in sort
    )


def compile_stat(query: Doc | None, schema: QuerySchema, scope: Doc, *, now: datetime | None = None) -> StatPlan:
    query = _root(query, _STAT_FIELDS)
    ctx = _Context(schema, now or datetime.now(timezone.utc))
    match, joined = _match(query, scope, ctx)
    distinct = query.get("distinct") is not None
    body = _stat_body(query, distinct, ctx)
    head = [match, *ctx.join_stages(), *joined]
    if query.get("page") is None:
        return StatPlan([*head, *body, {"$limit": schema.max_limit}], paged=False, distinct=distinct)
    page = _page_stages(query["page"], schema)
    return StatPlan([*head, *body, _facet(page)], paged=True, distinct=distinct)


def page_total(plan: ListPlan, returned: int) -> int | None:
    """The total when the page tells it, else None (run `count_pipeline`): a page shorter than its
    limit holds the last results, unless it is empty past the first result (the total could then
    be anything up to the skip)."""
    if returned < plan.limit and (returned or not plan.skip):
        return plan.skip + returned
    return None


def count_of(docs: list[Doc]) -> int:
    """The total a `count_pipeline` answered."""
    return _count_of(docs)


def unpack_stat(plan: StatPlan, docs: list[Doc]) -> tuple[list[Doc] | list[Any], int | None]:
    total = None
    if plan.paged:
        facet = docs[0] if docs else {"results": [], "total_count": []}
        docs, total = facet["results"], _count_of(facet["total_count"])
    if plan.distinct:
        return [doc["_id"] for doc in docs], total
    return docs, total


def _count_of(docs: list[Doc]) -> int:
    # $count emits no document at all when nothing matched.
    return docs[0][_COUNT] if docs else 0


def _facet(results: list[Doc]) -> Doc:
    return {"$facet": {"results": results, "total_count": [{"$count": _COUNT}]}}


# ---------------------------------------------------------------- structure helpers


def _root(query: Any, allowed: frozenset[str]) -> Doc:
    if query is None:
        return {}
    checked = _object(query, _ROOT)
    _known_fields(checked, allowed, _ROOT)
    return checked


def _object(value: Any, path: str) -> Doc:
    if not isinstance(value, dict):
        raise InvalidArgument(path, "must be an object")
    return value


def _array(value: Any, path: str, cap: int) -> list[Any]:
    """A list field; None (unset) is the empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(path, "must be a list")
    if len(value) > cap:
        raise InvalidArgument(path, f"must have at most {cap} items")
    return value


def _known_fields(obj: Doc, allowed: frozenset[str], path: str) -> None:
    for name in obj:
        if name not in allowed:
            raise InvalidArgument(f"{path}.{name}", "unknown field")


def _alias(obj: Doc, long: str, short: str, path: str) -> tuple[Any, str]:
    """Read a field that SpaceONE accepts under two names (`key`/`k`); None means unset."""
    if obj.get(long) is not None and obj.get(short) is not None:
        raise InvalidArgument(f"{path}.{short}", f"'{long}' and '{short}' are the same field; set only one")
    if obj.get(short) is not None:
        return obj[short], f"{path}.{short}"
    return obj.get(long), f"{path}.{long}"


def _required(obj: Doc, long: str, short: str, path: str) -> tuple[Any, str]:
    value, value_path = _alias(obj, long, short, path)
    if value is None:
        raise RequiredParameter(value_path)
    return value, value_path


def _flag(obj: Doc, name: str, path: str) -> bool:
    value = obj.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgument(f"{path}.{name}", "must be a boolean")
    return value


def _integer(value: Any, path: str, minimum: int) -> int:
    """A count such as page.limit; protobuf Struct numbers arrive as floats, so 3.0 is 3."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _INT64_MAX:
        raise InvalidArgument(path, f"must be an integer of at least {minimum}")
    return value


def _show(value: Any) -> str:
    """User text echoed in an error message, bounded."""
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


# ---------------------------------------------------------------- keys and names


def _key(value: Any, path: str) -> str:
    """A document field path: `name` or `name.sub.sub`; never `_id`, `_x` or `$x`."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(path, "must be a non-empty string")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidArgument(path, f"must be at most {MAX_KEY_LENGTH} characters")
    first, *rest = value.split(".")
    if not _IDENTIFIER.fullmatch(first):
        raise InvalidArgument(path, "must start with a letter followed by letters, digits or '_'")
    if any(not part or "$" in part or "\x00" in part for part in rest):
        raise InvalidArgument(path, "path segments must be non-empty and contain no '$'")
    return value


def _resolved(value: Any, path: str, ctx: _Context) -> Resolved:
    """A key naming a field of what the query reads: the resource, or a stat stage's outputs."""
    try:
        return ctx.keys.resolve(_key(value, path))
    except UnknownKey as error:
        raise InvalidArgument(path, str(error)) from None


def _field(value: Any, path: str, ctx: _Context) -> str:
    """A key as stored; a joined field's join is added to the query's."""
    resolved = _resolved(value, path, ctx)
    if resolved.join is not None:
        ctx.join_uses += 1
        if resolved.join not in ctx.joins:
            ctx.joins.append(resolved.join)
    return resolved.path


def _name(value: Any, path: str) -> str:
    """An output field name: letters, digits and '_', starting with a letter."""
    if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH or not _IDENTIFIER.fullmatch(value):
        raise InvalidArgument(path, "must be a name of letters, digits or '_' starting with a letter")
    return value


def _unique_names(named: list[tuple[str, str]]) -> None:
    """named: (name, path) pairs; a repeated output name or sort key would silently overwrite."""
    seen = set()
    for name, path in named:
        if name in seen:
            raise InvalidArgument(path, f"{_show(name)} appears more than once")
        seen.add(name)


# ---------------------------------------------------------------- values


def _value(value: Any, path: str, depth: int = 0) -> Any:
    """Validate a filter value as plain data and normalize integral floats to int."""
    if depth > MAX_VALUE_DEPTH:
        raise InvalidArgument(path, f"must be nested at most {MAX_VALUE_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return _int64(value, path)
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= _INT64_MAX else value
    if isinstance(value, list):
        items = _array(value, path, MAX_VALUES)
        return [_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(items)]
    if isinstance(value, dict):
        return {_value_key(k, path): _value(v, f"{path}.{k}", depth + 1) for k, v in value.items()}
    raise InvalidArgument(path, f"unsupported value type {type(value).__name__}")


def _int64(value: int, path: str) -> int:
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise InvalidArgument(path, "integer is out of the 64-bit range")
    return value


def _value_key(key: Any, path: str) -> str:
    if not isinstance(key, str):
        raise InvalidArgument(path, "object keys must be strings")
    if key.startswith("$") or "\x00" in key:
        raise InvalidArgument(path, "operators are not allowed in values")
    return key


def _scalar(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (list, dict)):
        raise InvalidArgument(path, "must be a string, number or boolean")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(path, "must be a string")
    return value


def _string_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidArgument(path, "must be a non-empty list of strings", spaceone_name=LIST_VALUE_TYPE)
    return [_string(item, f"{path}[{i}]") for i, item in enumerate(value)]


def _field_value(key: str, value: Any, path: str, ctx: _Context) -> Any:
    """On a datetime field an ISO-8601 string means a datetime (stored values are BSON dates)."""
    if key not in ctx.schema.datetime_fields:
        return value
    if isinstance(value, list):
        return [_field_value(key, item, f"{path}[{i}]", ctx) for i, item in enumerate(value)]
    return _iso_datetime(value, path) if isinstance(value, str) else value


def _iso_datetime(value: Any, path: str) -> datetime:
    try:
        return _bson_datetime(parse_iso_datetime(value))
    except TimeExprError as error:
        raise InvalidArgument(path, str(error)) from None


def _time_expression(value: Any, path: str, ctx: _Context) -> datetime:
    try:
        return _bson_datetime(parse_timediff(value, ctx.now))
    except TimeExprError as error:
        raise InvalidArgument(path, str(error)) from None


def _bson_datetime(moment: datetime) -> datetime:
    # Naive UTC, like the datetimes pymongo reads back: BSON dates carry no zone, and
    # mongomock cannot compare aware with naive datetimes inside expressions.
    return moment.replace(tzinfo=None)


# ---------------------------------------------------------------- regexes


def _literal_text(value: Any, path: str) -> str:
    """A string searched for literally (contain, keyword)."""
    text = _string(value, path)
    if len(text) > MAX_REGEX_LENGTH or "\x00" in text:
        raise InvalidArgument(path, f"must be at most {MAX_REGEX_LENGTH} characters without NUL")
    return text


def _substring(text: str, path: str, ctx: _Context) -> Doc:
    ctx.regex_budget.spend(regex_safety.subject_cost(len(text)), path)
    # A {$regex} document rather than a compiled pattern: the wire test server
    # mishandles BSON regex literals. re.escape output is valid PCRE.
    return {"$regex": re.escape(text), "$options": "i"}


def _pattern(value: Any, path: str, ctx: _Context) -> str:
    """A user regex: no NUL (MongoDB refuses it) and inside the subset that cannot backtrack
    catastrophically (see regex_safety), within the query's budget."""
    text = _string(value, path)
    if "\x00" in text:
        raise InvalidArgument(path, "must not contain NUL")
    try:
        pattern, cost = regex_safety.check(text)
    except regex_safety.UnsafeRegex as error:
        raise InvalidArgument(path, str(error)) from None
    ctx.regex_budget.spend(cost, path)
    return pattern


# ---------------------------------------------------------------- filter operators
# Each takes (key, normalized value, value path, context) and returns a MongoDB query condition.


def _equality(mongo_op: str) -> Callable[..., Any]:
    # $eq/$ne even for object values, so a value can never act as an operator.
    def compile_(key: str, value: Any, path: str, ctx: _Context) -> Doc:
        return {key: {mongo_op: _field_value(key, value, path, ctx)}}

    return compile_


def _comparison(mongo_op: str) -> Callable[..., Any]:
    def compile_(key: str, value: Any, path: str, ctx: _Context) -> Doc:
        return {key: {mongo_op: _field_value(key, _scalar(value, path), path, ctx)}}

    return compile_


def _membership(mongo_op: str) -> Callable[..., Any]:
    def compile_(key: str, value: Any, path: str, ctx: _Context) -> Doc:
        if not isinstance(value, list):
            raise InvalidArgument(path, "must be a list", spaceone_name=LIST_VALUE_TYPE)
        return {key: {mongo_op: _field_value(key, value, path, ctx)}}

    return compile_


def _datetime_comparison(mongo_op: str) -> Callable[..., Any]:
    def compile_(key: str, value: Any, path: str, ctx: _Context) -> Doc:
        return {key: {mongo_op: _iso_datetime(value, path)}}

    return compile_


def _timediff_comparison(mongo_op: str) -> Callable[..., Any]:
    def compile_(key: str, value: Any, path: str, ctx: _Context) -> Doc:
        return {key: {mongo_op: _time_expression(value, path, ctx)}}

    return compile_


def _exists(key: str, value: Any, path: str, ctx: _Context) -> Doc:
    if not isinstance(value, bool):
        raise InvalidArgument(path, "must be a boolean for operator 'exists'")
    return {key: {"$exists": value}}


def _contain(key: str, value: Any, path: str, ctx: _Context) -> Doc:
    return {key: _substring(_literal_text(value, path), path, ctx)}


def _not_contain(key: str, value: Any, path: str, ctx: _Context) -> Doc:
    # $nor rather than {"$not": {"$regex"...}}: the embedded store (mongomock) lacks the latter.
    return {"$nor": [{key: _substring(_literal_text(value, path), path, ctx)}]}


def _substrings(value: Any, path: str, ctx: _Context) -> list[Doc]:
    texts = _string_list(value, path)
    return [_substring(_literal_text(t, f"{path}[{i}]"), f"{path}[{i}]", ctx) for i, t in enumerate(texts)]


def _contain_in(key: str, value: Any, path: str, ctx: _Context) -> Doc:
    return _any_of([{key: condition} for condition in _substrings(value, path, ctx)])


def _not_contain_in(key: str, value: Any, path: str, ctx: _Context) -> Doc:
    # Excludes a document containing ANY of the texts (SpaceONE excluded only those containing all).
    return {"$nor": [{key: condition} for condition in _substrings(value, path, ctx)]}


def _regex(key: str, value: Any, path: str, ctx: _Context) -> Doc:
    return {key: {"$regex": _pattern(value, path, ctx)}}


def _regex_in(key: str, value: Any, path: str, ctx: _Context) -> Doc:
    patterns = _string_list(value, path)
    return _any_of([{key: {"$regex": _pattern(p, f"{path}[{i}]", ctx)}} for i, p in enumerate(patterns)])


def _elem_match(key: str, value: Any, path: str, ctx: _Context) -> Doc:
    """`match`: some element of an array of objects has all the given sub-key values."""
    if not isinstance(value, dict) or not value or len(value) > MAX_FIELDS:
        raise InvalidArgument(path, f"must be an object of 1 to {MAX_FIELDS} sub-key: value pairs")
    conditions = {
        _sub_key(key, sub, f"{path}.{sub}", ctx): {"$eq": _scalar(v, f"{path}.{sub}")} for sub, v in value.items()
    }
    return {key: {"$elemMatch": conditions}}


def _sub_key(key: str, sub: Any, path: str, ctx: _Context) -> str:
    """A sub-key of `match`, relative to the elements of `key` (stored): `key.sub` must be a field."""
    name = _key(sub, path)
    if _field(f"{key}.{name}", path, ctx) != f"{key}.{name}":
        raise InvalidArgument(path, f"{key}.{name} is not a field inside {key}")
    return name


_ORDERINGS = ("lt", "lte", "gt", "gte")
_FILTER_OPERATORS: dict[str, Callable[..., Doc]] = {
    "eq": _equality("$eq"),
    "not": _equality("$ne"),
    "exists": _exists,
    "contain": _contain,
    "not_contain": _not_contain,
    "in": _membership("$in"),
    "not_in": _membership("$nin"),
    "contain_in": _contain_in,
    "not_contain_in": _not_contain_in,
    "match": _elem_match,
    "regex": _regex,
    "regex_in": _regex_in,
    **{op: _comparison(f"${op}") for op in _ORDERINGS},
    **{f"datetime_{op}": _datetime_comparison(f"${op}") for op in _ORDERINGS},
    **{f"timediff_{op}": _timediff_comparison(f"${op}") for op in _ORDERINGS},
}


# ---------------------------------------------------------------- filters and $match

_FILTER_ITEM_FIELDS = frozenset({"key", "k", "value", "v", "operator", "o"})


def _operator(obj: Doc, path: str, known: Doc) -> str:
    """The operator of a filter-like item; unset means `eq`, as in SpaceONE."""
    name, name_path = _alias(obj, "operator", "o", path)
    if name is None:
        return "eq"
    if not isinstance(name, str) or name not in known:
        raise InvalidArgument(name_path, f"unknown operator {_show(name)}")
    return name


def _filter_parts(item: Any, path: str, known: Doc, ctx: _Context) -> tuple[str, Any, str, str]:
    """(key, normalized value, value path, operator) of a `{key, value, operator}` item in either dialect."""
    item = _object(item, path)
    _known_fields(item, _FILTER_ITEM_FIELDS, path)
    key, key_path = _required(item, "key", "k", path)
    key = _field(key, key_path, ctx)
    operator = _operator(item, path, known)
    value, value_path = _alias(item, "value", "v", path)
    return key, _value(value, value_path), value_path, operator


def _filter_item(item: Any, path: str, ctx: _Context) -> Doc:
    key, value, value_path, operator = _filter_parts(item, path, _FILTER_OPERATORS, ctx)
    return _FILTER_OPERATORS[operator](key, value, value_path, ctx)


def _filter_group(items: Any, path: str, ctx: _Context) -> list[tuple[Doc, bool]]:
    """(condition, whether it names a joined key) of each item."""
    items = _array(items, path, MAX_FILTERS)
    compiled = []
    for i, item in enumerate(items):
        uses = ctx.join_uses
        compiled.append((_filter_item(item, f"{path}[{i}]", ctx), ctx.join_uses > uses))
    return compiled


def _keyword(value: Any, ctx: _Context) -> list[Doc]:
    """Conditions (zero or one) for `keyword`: any token in any keyword field, case-insensitively."""
    path = f"{_ROOT}.keyword"
    tokens = list(dict.fromkeys(_literal_text(value, path).split())) if value is not None else []
    if not tokens:
        return []
    if len(tokens) > MAX_KEYWORD_TOKENS:
        raise InvalidArgument(path, f"must have at most {MAX_KEYWORD_TOKENS} words")
    if not ctx.schema.keyword_fields:
        raise InvalidArgument(path, "keyword search is not supported for this resource")
    return [_any_of([{field: _substring(token, path, ctx)} for token in tokens for field in ctx.schema.keyword_fields])]


def _match(query: Doc, scope: Doc, ctx: _Context) -> tuple[Doc, list[Doc]]:
    """scope AND filter items AND (any filter_or item) AND keyword, the scope's fields first: the
    `$match` stage of the conditions on the resource's own fields, and the `$match` (none or one)
    of those naming a joined key, which runs after the join."""
    conditions = _filter_group(query.get("filter"), f"{_ROOT}.filter", ctx)
    alternatives = _filter_group(query.get("filter_or"), f"{_ROOT}.filter_or", ctx)
    if alternatives:
        either = _any_of([condition for condition, _ in alternatives])
        conditions.append((either, any(joined for _, joined in alternatives)))
    conditions += [(condition, False) for condition in _keyword(query.get("keyword"), ctx)]
    own = _all_of(scope, [condition for condition, joined in conditions if not joined])
    joined = [condition for condition, is_joined in conditions if is_joined]
    return {"$match": own}, [{"$match": _all_of({}, joined)}] if joined else []


def _all_of(scope: Doc, conditions: list[Doc]) -> Doc:
    """AND as flat as possible, the scope's fields first: conditions on fresh top-level keys
    merge into one document; one whose key is taken (merging would overwrite) goes into an
    explicit $and after them (no condition has `$and` of its own)."""
    merged: Doc = dict(scope)
    overlapping: list[Doc] = []
    for condition in conditions:
        if merged.keys() & condition.keys():
            overlapping.append(condition)
        else:
            merged.update(condition)
    if overlapping:
        merged["$and"] = overlapping
    return merged


def _any_of(conditions: list[Doc]) -> Doc:
    return conditions[0] if len(conditions) == 1 else {"$or": conditions}


# ---------------------------------------------------------------- sort, page, projection

_SORT_FIELDS = frozenset({"key", "desc", "keys"})
_SORT_KEY_FIELDS = frozenset({"key", "desc"})


def _sort_keys(sort: Any, path: str, ctx: _Context) -> list[tuple[str, bool]]:
    """(key, desc) pairs from `{key, desc}`, `{keys: [...]}` or a list of `{key, desc}`."""
    if sort is None:
        return []
    if isinstance(sort, list):
        pairs = _sort_key_list(sort, path, ctx)
    else:
        pairs = _sort_object(_object(sort, path), path, ctx)
    _unique_names([(key, path) for key, _ in pairs])
    return pairs


def _sort_object(sort: Doc, path: str, ctx: _Context) -> list[tuple[str, bool]]:
    _known_fields(sort, _SORT_FIELDS, path)
    if sort.get("keys") is not None:
        if sort.get("key") is not None or sort.get("desc") is not None:
            raise InvalidArgument(path, "set either key/desc or keys, not both")
        return _sort_key_list(sort["keys"], f"{path}.keys", ctx)
    if sort.get("key") is None:
        if sort.get("desc") is not None:
            raise RequiredParameter(f"{path}.key")
        return []
    return [_sort_key(sort, path, ctx)]


def _sort_key_list(items: Any, path: str, ctx: _Context) -> list[tuple[str, bool]]:
    items = _array(items, path, MAX_SORT_KEYS)
    return [_sort_key_item(item, f"{path}[{i}]", ctx) for i, item in enumerate(items)]


def _sort_key_item(item: Any, path: str, ctx: _Context) -> tuple[str, bool]:
    item = _object(item, path)
    _known_fields(item, _SORT_KEY_FIELDS, path)
    return _sort_key(item, path, ctx)


def _sort_key(item: Doc, path: str, ctx: _Context) -> tuple[str, bool]:
    if item.get("key") is None:
        raise RequiredParameter(f"{path}.key")
    return _field(item["key"], f"{path}.key", ctx), _flag(item, "desc", path)


def _sort_document(pairs: list[tuple[str, bool]] | tuple[tuple[str, bool], ...]) -> Doc:
    return {key: -1 if desc else 1 for key, desc in pairs}


def _list_sort(sort: Any, ctx: _Context) -> Doc:
    document = _sort_document(_sort_keys(sort, f"{_ROOT}.sort", ctx) or ctx.schema.default_sort)
    # Unique tie-breaker: pages over equal sort values stay stable, and equal created_at keep
    # insertion order (a process's ObjectIds increase), so the default is SpaceONE's oldest first.
    document.setdefault("_id", 1)
    return document


_PAGE_FIELDS = frozenset({"start", "limit"})


def _page(page: Any, schema: QuerySchema) -> tuple[int, int]:
    """(skip, limit) for a 1-based `start` and a `limit` capped at schema.max_limit."""
    path = f"{_ROOT}.page"
    page = _object(page, path) if page is not None else {}
    _known_fields(page, _PAGE_FIELDS, path)
    start = _integer(page.get("start", 0), f"{path}.start", 0)
    limit = _integer(page.get("limit", 0), f"{path}.limit", 0)
    return max(start, 1) - 1, min(limit or schema.max_limit, schema.max_limit)


def _page_stages(page: Any, schema: QuerySchema) -> list[Doc]:
    skip, limit = _page(page, schema)
    return [{"$skip": skip}, {"$limit": limit}]


def _projection(query: Doc, ctx: _Context) -> list[Doc]:
    """`only` wins over `minimal`; no projection returns whole documents."""
    path = f"{_ROOT}.only"
    only = [_only_key(key, f"{path}[{i}]", ctx) for i, key in enumerate(_array(query.get("only"), path, MAX_FIELDS))]
    only = list(dict.fromkeys(only))  # two joined keys keep the same local field
    _no_path_collision(only, path)
    minimal = _flag(query, "minimal", _ROOT)
    fields = only or (ctx.schema.minimal_fields if minimal else ())
    return [{"$project": {key: 1 for key in fields}}] if fields else []


def _only_key(value: Any, path: str, ctx: _Context) -> str:
    """A key of `only`, as stored; a joined key keeps the field its join matches on (the answer
    joins on the page), so naming one costs no join here."""
    resolved = _resolved(value, path, ctx)
    return resolved.join.local_field if resolved.join else resolved.path


def _no_path_collision(keys: list[str], path: str) -> None:
    # MongoDB refuses to project both `a` and `a.b`.
    for key in keys:
        if any(other.startswith(key + ".") for other in keys):
            raise InvalidArgument(path, f"{_show(key)} overlaps a longer key in the same list")


# ---------------------------------------------------------------- stat


def _stat_body(query: Doc, distinct: bool, ctx: _Context) -> list[Doc]:
    path = f"{_ROOT}.aggregate"
    stages = _array(query.get("aggregate"), path, MAX_AGGREGATE_STAGES)
    if stages and distinct:
        raise InvalidArgument(path, "set either aggregate or distinct, not both")
    if distinct:
        return _distinct(query["distinct"], ctx)
    if not stages:
        raise InvalidArgument(path, "aggregate or distinct is required")
    return [compiled for i, stage in enumerate(stages) for compiled in _stage(stage, f"{path}[{i}]", ctx)]


def _distinct(key: Any, ctx: _Context) -> list[Doc]:
    """Distinct values, array elements counted one by one; missing and null values are dropped."""
    field = "$" + _field(key, f"{_ROOT}.distinct", ctx)
    return [{"$unwind": field}, {"$group": {"_id": field}}, {"$sort": {"_id": 1}}]


def _stage(stage: Any, path: str, ctx: _Context) -> list[Doc]:
    stage = _object(stage, path)
    kinds = [kind for kind, spec in stage.items() if spec is not None]
    if len(kinds) != 1 or kinds[0] not in _STAGES:
        raise InvalidArgument(path, f"must set exactly one of {', '.join(_STAGES)}")
    kind = kinds[0]
    return _STAGES[kind](stage[kind], f"{path}.{kind}", ctx)


def _unwind_stage(spec: Any, path: str, ctx: _Context) -> list[Doc]:
    spec = _object(spec, path)
    _known_fields(spec, frozenset({"path"}), path)
    if spec.get("path") is None:
        raise RequiredParameter(f"{path}.path")
    return [{"$unwind": "$" + _field(spec["path"], f"{path}.path", ctx)}]


def _count_stage(spec: Any, path: str, ctx: _Context) -> list[Doc]:
    spec = _object(spec, path)
    _known_fields(spec, frozenset({"name"}), path)
    if spec.get("name") is None:
        raise RequiredParameter(f"{path}.name")
    name = _name(spec["name"], f"{path}.name")
    ctx.keys = outputs(frozenset({name}))
    return [{"$count": name}]


def _sort_stage(spec: Any, path: str, ctx: _Context) -> list[Doc]:
    pairs = _sort_keys(_object(spec, path), path, ctx)
    if not pairs:
        raise InvalidArgument(path, "key or keys is required")
    return [{"$sort": _sort_document(pairs)}]


def _limit_stage(spec: Any, path: str, ctx: _Context) -> list[Doc]:
    return [{"$limit": _integer(spec, path, 1)}]


def _skip_stage(spec: Any, path: str, ctx: _Context) -> list[Doc]:
    return [{"$skip": _integer(spec, path, 0)}]


# ---- project

_PROJECT_FIELD_FIELDS = frozenset({"key", "k", "name", "n", "operator", "o"})
_PROJECT_OPERATORS: dict[str, Callable[[str], Any]] = {
    # $size fails the whole query on a missing or non-array value: count those as 0 instead.
    "size": lambda field: {"$cond": [{"$isArray": field}, {"$size": field}, 0]},
    "sum": lambda field: {"$sum": field},
    "average": lambda field: {"$avg": field},
    "max": lambda field: {"$max": field},
    "min": lambda field: {"$min": field},
}


def _project_stage(spec: Any, path: str, ctx: _Context) -> list[Doc]:
    spec = _object(spec, path)
    _known_fields(spec, frozenset({"fields", "exclude_keys"}), path)
    items = _array(spec.get("fields"), f"{path}.fields", MAX_FIELDS)
    if not items:
        raise RequiredParameter(f"{path}.fields")
    fields = [_project_field(item, f"{path}.fields[{i}]", ctx) for i, item in enumerate(items)]
    _unique_names([(name, field_path) for name, _, field_path in fields])
    ctx.keys = outputs(frozenset(name for name, _, _ in fields))
    projection = {"_id": 0} if _flag(spec, "exclude_keys", path) else {}
    return [{"$project": {**projection, **{name: expression for name, expression, _ in fields}}}]


def _project_field(item: Any, path: str, ctx: _Context) -> tuple[str, Any, str]:
    item = _object(item, path)
    _known_fields(item, _PROJECT_FIELD_FIELDS, path)
    key, key_path = _required(item, "key", "k", path)
    name, name_path = _required(item, "name", "n", path)
    field = "$" + _field(key, key_path, ctx)
    operator, operator_path = _alias(item, "operator", "o", path)
    if operator is None:
        return _name(name, name_path), field, name_path
    if not isinstance(operator, str) or operator not in _PROJECT_OPERATORS:
        raise InvalidArgument(operator_path, f"unknown operator {_show(operator)}")
    return _name(name, name_path), _PROJECT_OPERATORS[operator](field), name_path


# ---- group

_GROUP_KEY_FIELDS = frozenset({"key", "k", "name", "n", "date_format"})
_GROUP_FIELD_FIELDS = frozenset({"key", "k", "name", "n", "operator", "o", "fields", "conditions"})
_SUB_FIELD_FIELDS = frozenset({"key", "k", "name", "n"})
_ACCUMULATORS = {
    "count": "$sum",
    "sum": "$sum",
    "average": "$avg",
    "max": "$max",
    "min": "$min",
    "first": "$first",
    "last": "$last",
    "push": "$push",
    "add_to_set": "$addToSet",
    "merge_objects": "$mergeObjects",
}
_OBJECT_ACCUMULATORS = frozenset({"push", "add_to_set"})  # the ones that may collect `fields` objects


def _group_stages(spec: Any, path: str, ctx: _Context) -> list[Doc]:
    """$group, then a $project that lifts the key names out of `_id` so outputs are flat."""
    spec = _object(spec, path)
    _known_fields(spec, frozenset({"keys", "fields"}), path)
    key_items = _array(spec.get("keys"), f"{path}.keys", MAX_FIELDS)
    field_items = _array(spec.get("fields"), f"{path}.fields", MAX_FIELDS)
    if not key_items and not field_items:
        raise InvalidArgument(path, "keys or fields is required")
    keys = [_group_key(item, f"{path}.keys[{i}]", ctx) for i, item in enumerate(key_items)]
    fields = [_group_field(item, f"{path}.fields[{i}]", ctx) for i, item in enumerate(field_items)]
    _unique_names([(name, name_path) for name, _, name_path in keys + fields])
    ctx.keys = outputs(frozenset(name for name, _, _ in keys + fields))
    group = {"_id": {name: expression for name, expression, _ in keys} or None}
    group.update({name: accumulator for name, accumulator, _ in fields})
    project = {"_id": 0, **{name: f"$_id.{name}" for name, _, _ in keys}, **{name: 1 for name, _, _ in fields}}
    return [{"$group": group}, {"$project": project}]


def _group_key(item: Any, path: str, ctx: _Context) -> tuple[str, Any, str]:
    """(output name, grouping expression, name path)."""
    item = _object(item, path)
    _known_fields(item, _GROUP_KEY_FIELDS, path)
    key, key_path = _required(item, "key", "k", path)
    name, name_path = _required(item, "name", "n", path)
    field: Any = "$" + _field(key, key_path, ctx)
    date_format = item.get("date_format")
    if date_format not in (None, ""):  # "" is proto3's unset
        field = {"$dateToString": {"format": _date_format(date_format, f"{path}.date_format"), "date": field}}
    return _name(name, name_path), field, name_path


def _date_format(value: Any, path: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH or not _DATE_FORMAT.fullmatch(value):
        raise InvalidArgument(
            path, "must use only %Y %m %d %H %M %S %L %j %w %u %U %V %G %Z %z %% and plain characters"
        )
    return value


def _group_field(item: Any, path: str, ctx: _Context) -> tuple[str, Doc, str]:
    """(output name, accumulator, name path)."""
    item = _object(item, path)
    _known_fields(item, _GROUP_FIELD_FIELDS, path)
    name, name_path = _required(item, "name", "n", path)
    operator, operator_path = _required(item, "operator", "o", path)
    if not isinstance(operator, str) or operator not in _ACCUMULATORS:
        raise InvalidArgument(operator_path, f"unknown operator {_show(operator)}")
    operand = _accumulator_operand(item, operator, path, ctx)
    condition = _conditions(item.get("conditions"), f"{path}.conditions", ctx)
    if condition is not None:
        operand = {"$cond": [condition, operand, 0 if operator == "count" else None]}
    return _name(name, name_path), {_ACCUMULATORS[operator]: operand}, name_path


def _accumulator_operand(item: Doc, operator: str, path: str, ctx: _Context) -> Any:
    """What the accumulator collects: 1 for count, an object for push/add_to_set with
    `fields`, else the key's value."""
    key, key_path = _alias(item, "key", "k", path)
    sub_items = _array(item.get("fields"), f"{path}.fields", MAX_FIELDS)
    if sub_items and operator not in _OBJECT_ACCUMULATORS:
        raise InvalidArgument(f"{path}.fields", "is only allowed with operators push and add_to_set")
    field = "$" + _field(key, key_path, ctx) if key is not None else None
    if operator == "count":
        return 1
    if sub_items:
        return _sub_fields(sub_items, f"{path}.fields", ctx)
    if field is None:
        raise RequiredParameter(key_path)
    return field


def _sub_fields(items: list[Any], path: str, ctx: _Context) -> Doc:
    entries = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        item = _object(item, item_path)
        _known_fields(item, _SUB_FIELD_FIELDS, item_path)
        key, key_path = _required(item, "key", "k", item_path)
        name, name_path = _required(item, "name", "n", item_path)
        entries.append((_name(name, name_path), "$" + _field(key, key_path, ctx), name_path))
    _unique_names([(name, name_path) for name, _, name_path in entries])
    return {name: field for name, field, _ in entries}


# ---- group conditions (aggregation expressions, every user value in $literal)


def _expression_comparison(mongo_op: str) -> Callable[..., Any]:
    def compile_(field: str, value: Any, path: str) -> Doc:
        return {mongo_op: [field, {"$literal": _scalar(value, path)}]}

    return compile_


def _expression_equality(mongo_op: str) -> Callable[..., Any]:
    def compile_(field: str, value: Any, path: str) -> Doc:
        return {mongo_op: [field, {"$literal": value}]}

    return compile_


def _expression_in(field: str, value: Any, path: str) -> Doc:
    if not isinstance(value, list):
        raise InvalidArgument(path, "must be a list", spaceone_name=LIST_VALUE_TYPE)
    return {"$in": [field, {"$literal": value}]}


def _expression_not_in(field: str, value: Any, path: str) -> Doc:
    return {"$not": [_expression_in(field, value, path)]}


def _expression_exists(field: str, value: Any, path: str) -> Doc:
    if not isinstance(value, bool):
        raise InvalidArgument(path, "must be a boolean for operator 'exists'")
    return {"$ne" if value else "$eq": [{"$type": field}, "missing"]}


_CONDITION_OPERATORS: dict[str, Callable[..., Doc]] = {
    "eq": _expression_equality("$eq"),
    "not": _expression_equality("$ne"),
    **{op: _expression_comparison(f"${op}") for op in _ORDERINGS},
    "in": _expression_in,
    "not_in": _expression_not_in,
    "exists": _expression_exists,
}


def _conditions(items: Any, path: str, ctx: _Context) -> Doc | None:
    """All conditions as one aggregation expression, or None when there are none."""
    items = _array(items, path, MAX_FILTERS)
    expressions = [_condition(item, f"{path}[{i}]", ctx) for i, item in enumerate(items)]
    if not expressions:
        return None
    return expressions[0] if len(expressions) == 1 else {"$and": expressions}


def _condition(item: Any, path: str, ctx: _Context) -> Doc:
    key, value, value_path, operator = _filter_parts(item, path, _CONDITION_OPERATORS, ctx)
    value = _field_value(key, value, value_path, ctx)
    return _CONDITION_OPERATORS[operator]("$" + key, value, value_path)


_STAGES: dict[str, Callable[[Any, str, _Context], list[Doc]]] = {
    "unwind": _unwind_stage,
    "group": _group_stages,
    "count": _count_stage,
    "sort": _sort_stage,
    "project": _project_stage,
    "limit": _limit_stage,
    "skip": _skip_stage,
}
