"""Cron expressions in words, for the admin and the dashboard ("At 09:00, on the last
Monday of the month"), by the ``cron_descriptor`` library, with the cases it words
wrongly put right first."""

from __future__ import annotations

import re

from cron_descriptor import Options, get_description  # type: ignore[import-untyped]
from croniter import croniter  # type: ignore[import-untyped]

from trigger_celery.core.cron import MACROS, parse_cron


def describe(cron: str) -> str:
    """The expression in words ("At 09:00, on the last Monday of the month")."""
    said = _describe(cron)
    # The library has no word for the fourth (``5#4``: "on the  Friday of the month").
    return said.replace("the  ", "the fourth ") if "#4" in cron else said


def _describe(cron: str) -> str:
    try:
        options = Options()
        options.use_24hour_time_format = True
        options.throw_exception_on_parse_error = True
        expr = _every_day(_upper_l(MACROS.get(cron.strip().lower(), cron)))
        expr = _one_name_per_day(_stepped_days(_stepped_month_days(expr)))
        mixed = _mixed_weekdays(expr, options)
        if mixed is not None:
            return mixed
        fields = expr.split()
        dom = fields[2].split(",") if len(fields) == 5 else []
        if "L" in dom and len(dom) > 1:  # "1,L": the description says "day 1 and L"
            fields[2] = ",".join(d for d in dom if d != "L")
            said = _either_day(" ".join(fields), options) or str(
                get_description(" ".join(fields), options)
            )
            said = said.replace(" of the month", " and the last day of the month", 1)
            return _odd_or_even(said, options)
        return _odd_or_even(
            _either_day(expr, options) or str(get_description(expr, options)), options
        )
    except Exception:  # a description is a nicety; never fail because of it
        return cron


def _mixed_weekdays(expr: str, options: Options) -> str | None:
    """Plain days of week listed with ``nL`` / ``n#k`` ones (``1,5L``: every Monday, and
    the last Friday), which the library words as one ("the last Monday and Friday")."""
    fields = expr.split()
    items = fields[4].split(",") if len(fields) == 5 else []
    special = [item for item in items if re.search(r"[L#]", item)]
    plain = [item for item in items if item not in special]
    if not special:
        return None
    minute, hour, dom, month, _ = fields
    if not plain:
        return _only_ordinal_weekdays(special, fields, options)
    first = describe(f"{minute} {hour} {dom} {month} {','.join(plain)}")
    base = str(get_description(f"{minute} {hour} * * *", options))
    rest = str(get_description(f"{minute} {hour} * * {','.join(special)}", options))
    if not rest.startswith(base):
        return None
    return f"{first} or {rest[len(base) :].removeprefix(', ')}"


def _only_ordinal_weekdays(special: list[str], fields: list[str], options: Options) -> str | None:
    """Only ``nL`` / ``n#k`` days, more than one (``5#2,5#4``), which the library words
    as "the Friday and Friday": each in its own words, joined by "or", as is a day of
    the month (cron fires on a day that matches either field)."""
    if len(special) == 1:
        return None
    minute, hour, dom, month, _ = fields

    def words(dom: str, month: str, dow: str) -> str:
        return str(get_description(f"{minute} {hour} {dom} {month} {dow}", options))

    base = words("*", "*", "*")
    parts = [words(dom, "*", "*")] if dom not in ("*", "?") else []
    parts += [words("*", "*", day) for day in special]
    in_month = words("*", month, "*")
    if not all(part.startswith(base) for part in [*parts, in_month]):
        return None
    joined = " or".join(part[len(base) :] for part in parts).replace(" or, ", " or ")
    return f"{base}{joined}{in_month[len(base) :]}"


def _upper_l(cron: str) -> str:
    """``l`` (last) in the day fields as ``L``, which the words below look for: cron
    takes either, and ``0 9 l * *`` was worded "on day l of the month"."""
    fields = cron.split()
    if len(fields) == 5:
        fields[2] = fields[2].replace("l", "L")
        fields[4] = re.sub(r"(?<=[0-7])l", "L", fields[4])
    return " ".join(fields)


def _every_day(cron: str) -> str:
    """A day field that names every value (``1-31``, ``0-6``, ``*/1``) as ``*``: it does
    not restrict the days, and the words must not say "or between day 1 and 31"."""
    fields = cron.split()
    forms = [form.split() for form in parse_cron(cron).engine_forms] if len(fields) == 5 else []
    for index in (2, 4):
        if forms and all(form[index] == "*" for form in forms):
            fields[index] = "*"
    return " ".join(fields)


def _stepped_month_days(cron: str) -> str:
    """A stepped day of month (``*/2``, ``5/10``) as the days it fires on. The step
    starts again each month (``*/2`` fires on the 31st and on the 1st after it), so the
    library's "every 2 days" is not what happens."""
    fields = cron.split()
    if len(fields) != 5 or "/" not in fields[2]:
        return cron
    items = fields[2].split(",")
    plain = [item.replace("?", "*") for item in items if item.upper() != "L"]
    days = croniter.expand(f"* * {','.join(plain)} * *")[0][2]
    if days == ["*"]:
        return cron
    fields[2] = ",".join([*(str(day) for day in days), *(["L"] if len(plain) < len(items) else [])])
    return " ".join(fields)


def _odd_or_even(said: str, options: Options) -> str:
    """Every odd (``*/2``) or every even (``2/2``) day of the month in two words, where
    the library lists all sixteen or fifteen days."""
    for first, name in ((1, "the odd days"), (2, "the even days")):
        days = ",".join(str(day) for day in range(first, 32, 2))
        listed = str(get_description(f"0 0 {days} * *", options))  # "..., on day 1, 3, ..."
        start, end = listed.index("day 1" if first == 1 else "day 2"), listed.rindex(" of the")
        said = said.replace(listed[start:end], name)
    return said


def _stepped_days(cron: str) -> str:
    """A stepped day of week (``7/2``: Sunday alone; ``5/3``: Friday) as the days it
    fires on, which the describing library gets wrong ("every 2 days of the week,
    Sunday through Saturday")."""
    fields = cron.split()
    if len(fields) != 5 or "/" not in fields[4] or re.search(r"[L#]", fields[4]):
        return cron
    forms = parse_cron(" ".join(fields)).engine_forms
    days = croniter.expand(forms[0])[0][4]
    if len(forms) != 1 or days == ["*"]:
        return cron
    fields[4] = ",".join(str(day) for day in days)
    return " ".join(fields)


def _either_day(expr: str, options: Options) -> str | None:
    """With both day fields restricted, cron fires on a day that matches either (``0 0 1
    * 0``: the 1st, and every Sunday); say "or" where the plain description reads as if
    both had to match. None when the expression restricts at most one of them."""
    fields = expr.split()
    if len(fields) != 5 or fields[2] in ("*", "?") or fields[4] in ("*", "?"):
        return None
    minute, hour, dom, month, dow = fields

    def words(dom: str, month: str, dow: str) -> str:
        return str(get_description(f"{minute} {hour} {dom} {month} {dow}", options))

    base = words("*", "*", "*")
    parts = [words(dom, "*", "*"), words("*", "*", dow), words("*", month, "*")]
    if not all(part.startswith(base) for part in parts):
        return None
    on_date, on_day, in_month = (part[len(base) :] for part in parts)
    on_day = on_day.removeprefix(", ").removeprefix("only ")
    return f"{base}{on_date} or {on_day}{in_month}"


def _one_name_per_day(cron: str) -> str:
    """A day-of-week list that names a day twice (``0,7``: Sunday both) once per day, so
    its description does not read "on Sunday and Sunday"."""
    fields = cron.split()
    if len(fields) == 5 and re.fullmatch(r"[0-7](,[0-7])+", fields[4]):
        days = sorted({int(day) % 7 for day in fields[4].split(",")})
        fields[4] = ",".join(str(day) for day in days)
    return " ".join(fields)
