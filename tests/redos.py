"""A ReDoS corpus shared by the regex checker's unit tests and the API stall tests."""

# Published catastrophic (exponential) patterns: nested quantifiers and repeated alternations.
REDOS_CORPUS = [
    r"^(a+)+$",
    r"(a|aa)+",
    r"(a|a?)+",
    r"(.*a){12}",
    r"^(([a-z])+.)+[A-Z]([a-z])+$",
    r"(\w+\s?)+$",
    r"^(\d+)*$",
    r"(x+x+)+y",
    r"([a-zA-Z]+)*",
    r"(a*)*b",
    r"^(a+)+b",
    r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+$",
    r"(\d+|\w+)*x",
    r"^(\w+\s?)*$",
    r"(a?){25}a{25}",
]
