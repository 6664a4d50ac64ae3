"""Content-Security-Policy for Django 5.2 (which has none): the ``CONTENT_SECURITY_POLICY``
setting as a header on every response."""


def csp_with(policy: str, extra: dict[str, list[str]]) -> str:
    """``policy`` with more sources for some directives (one missing starts from default-src)."""
    directives = {}
    for part in policy.split(";"):
        if part.split():
            name, *sources = part.split()
            directives[name.lower()] = sources
    for name, sources in extra.items():
        base = directives.get(name, directives.get("default-src", []))
        directives[name] = [*base, *(s for s in sources if s not in base)]
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())


def content_security_policy(get_response):
    """Middleware: the CONTENT_SECURITY_POLICY header, unless the response has one; a response
    may carry ``csp_extra`` ({directive: [source, ...]}) for what only it needs. With DEBUG on
    it is only reported (Content-Security-Policy-Report-Only)."""
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings as current

    def add_header(response):
        policy = current.CONTENT_SECURITY_POLICY
        # with DEBUG on, reported in the console but not enforced: Django's debug pages are
        # styled inline
        header = "Content-Security-Policy" + ("-Report-Only" if current.DEBUG else "")
        if policy and header not in response:
            extra = getattr(response, "csp_extra", None)
            response[header] = csp_with(policy, extra) if extra else policy
        return response

    if iscoroutinefunction(get_response):

        async def middleware(request):
            return add_header(await get_response(request))

        markcoroutinefunction(middleware)
    else:

        def middleware(request):
            return add_header(get_response(request))

    return middleware


content_security_policy.sync_capable = True
content_security_policy.async_capable = True
