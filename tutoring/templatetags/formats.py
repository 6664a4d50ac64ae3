"""``{% load formats %}``: the numbers of ``config.formats`` in templates (``|percent``,
``|duration``, ``|coefficient``), the same on every page."""

from django import template

from config import formats

register = template.Library()


@register.filter
def percent(value):
    return formats.percent(value)


@register.filter
def duration(seconds):
    return formats.duration(seconds)


@register.filter
def coefficient(value):
    return formats.coefficient(value)
