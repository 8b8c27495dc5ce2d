"""Browser sign-in: the sign-in page (English and Chinese), token sign-in, single sign-on, sign-out.

Sign-in pages are plain HTML with no script at all; every value shown is escaped.
Once signed in, `/` is the workbench (streams/api/workbench.py).
Forms carry a hidden `csrf_token`: on the sign-in form it is bound to a
short-lived cookie of the browser (so another site cannot sign a browser in
as someone else), on signed-in pages to the session.
"""

from __future__ import annotations

import html
import logging
import secrets
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from streams import metrics
from streams.api.bodies import read_body
from streams.api.identity import AuthFailure, Gatekeeper, Identity
from streams.api.oidc import OidcClient, ProviderUnavailable, TokenRejected, pkce_pair

log = logging.getLogger("clientpulse.api.pages")

LANGS = ("en", "zh")
SIGNIN_ATTEMPT_SECONDS = 600
MAX_FORM_BYTES = 4096
STATIC_FILES = {"signin.css": "text/css", "workbench.css": "text/css", "workbench.js": "text/javascript"}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Sign in to clientpulse",
        "label": "Access token",
        "submit": "Sign in",
        "sso": "Sign in with {provider}",
        "bad_token": "That token was not accepted. Check it and try again.",
        "rate_limited": "Too many failed attempts. Wait {seconds} seconds and try again.",
        "expired_form": "The sign-in page had expired. Please try again.",
        "unavailable": "Sign-in is unavailable right now. Try again in a few minutes.",
        "sso_failed": "Single sign-on did not complete. Please try again.",
        "sso_no_role": "You are signed in at {provider}, but you have no clientpulse role. Ask your manager.",
        "other_lang": "中文",
    },
    "zh": {
        "title": "登录 clientpulse",
        "label": "访问令牌",
        "submit": "登录",
        "sso": "使用 {provider} 登录",
        "bad_token": "令牌无效，请检查后重试。",
        "rate_limited": "失败次数过多，请等待 {seconds} 秒后重试。",
        "expired_form": "登录页面已过期，请重试。",
        "unavailable": "登录服务暂时不可用，请几分钟后重试。",
        "sso_failed": "单点登录未完成，请重试。",
        "sso_no_role": "您已在 {provider} 登录，但没有 clientpulse 角色，请联系您的主管。",
        "other_lang": "English",
    },
}


def page_lang(request: web.Request, default: str = "en") -> str:
    """`lang` query, then `lang` cookie, then Accept-Language (zh-* is Chinese), else `default` (the rules
    file's locale)."""
    for candidate in (request.query.get("lang"), request.cookies.get("lang")):
        if candidate in LANGS:
            return candidate
    for part in request.headers.get("Accept-Language", "").split(","):
        tag = part.split(";", 1)[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return default


def _page(lang: str, title: str, body: str, *, csrf: str | None = None) -> str:
    meta = f'<meta name="csrf-token" content="{html.escape(csrf)}">' if csrf else ""
    return (
        f'<!doctype html>\n<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta}'
        f'<title>{html.escape(title)}</title><link rel="stylesheet" href="/static/signin.css"></head>'
        f"<body><main>{body}</main></body></html>\n"
    )


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=headers)


class Pages:
    def __init__(self, gate: Gatekeeper, oidc: OidcClient | None, default_lang: str = "en") -> None:
        self.gate = gate
        self.oidc = oidc
        self.default_lang = default_lang

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/signin", self.signin_page)
        app.router.add_post("/signin", self.signin_submit)
        app.router.add_post("/signout", self.signout)
        app.router.add_get("/signin/oidc", self.oidc_start)
        app.router.add_get("/signin/oidc/callback", self.oidc_callback)
        app.router.add_get("/static/{name}", self.static)

    # ------------------------------------------------------------------ pages
    async def _identity(self, request: web.Request) -> Identity | None:
        try:
            return await self.gate.identify(request)
        except AuthFailure:
            return None

    async def _signin_form(
        self,
        request: web.Request,
        *,
        error: str | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        lang = page_lang(request, self.default_lang)
        t = TEXT[lang]
        response = _html("", status, headers)
        _, csrf = await self.gate.signin_binding(request, response)
        if "lang" in request.query and request.query["lang"] in LANGS:
            response.set_cookie("lang", lang, max_age=365 * 86400, path="/", samesite="Lax")
        other = "zh" if lang == "en" else "en"
        sso = ""
        if self.oidc is not None:
            provider = html.escape(self.oidc.config.provider_name)
            sso = f'<a class="sso" href="/signin/oidc">{t["sso"].format(provider=provider)}</a>'
        error_html = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        body = (
            f"<h1>{html.escape(t['title'])}</h1>{error_html}"
            '<form method="post" action="/signin">'
            f'<input type="hidden" name="csrf_token" value="{html.escape(csrf)}">'
            f'<label for="token">{html.escape(t["label"])}</label>'
            '<input id="token" name="token" type="password" autocomplete="current-password" required maxlength="4096">'
            f'<button type="submit">{html.escape(t["submit"])}</button></form>{sso}'
            f'<p class="lang"><a href="/signin?lang={other}">{html.escape(t["other_lang"])}</a></p>'
        )
        response.text = _page(lang, t["title"], body)
        return response

    async def signin_page(self, request: web.Request) -> web.StreamResponse:
        return await self._signin_form(request)

    async def _read_form(self, request: web.Request) -> dict[str, str]:
        raw = await read_body(request, MAX_FORM_BYTES, self.gate.settings.api_body_timeout)
        try:
            parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=10, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            return {}
        return {k: v[0] for k, v in parsed.items() if len(v) == 1}

    async def signin_submit(self, request: web.Request) -> web.StreamResponse:
        form = await self._read_form(request)
        t = TEXT[page_lang(request, self.default_lang)]
        if not await self.gate.signin_form_ok(request, form.get("csrf_token")):
            metrics.CSRF_REFUSED.inc()
            return await self._signin_form(request, error=t["expired_form"], status=403)
        token = form.get("token", "").strip()
        try:
            principal = await self.gate.check_secret(request, token)
        except AuthFailure as exc:
            if exc.status == 429:
                seconds = str(exc.retry_after or 1)
                return await self._signin_form(
                    request,
                    error=t["rate_limited"].format(seconds=seconds),
                    status=429,
                    headers={"Retry-After": seconds},
                )
            if exc.status == 503:
                return await self._signin_form(request, error=t["unavailable"], status=503)
            return await self._signin_form(request, error=t["bad_token"], status=401)
        response = web.HTTPSeeOther("/")
        await self.gate.start_session(response, principal, "token")
        log.info("signed in with a token: %s (%s)", principal.name, principal.role)
        raise response

    async def signout(self, request: web.Request) -> web.StreamResponse:
        identity = await self._identity(request)
        submitted = request.headers.get("X-CSRF-Token")
        if submitted is None:
            submitted = (await self._read_form(request)).get("csrf_token")
        if identity is not None and identity.via == "session" and not self.gate.csrf_matches(identity, submitted):
            metrics.CSRF_REFUSED.inc()
            lang = page_lang(request, self.default_lang)
            return _html(_page(lang, TEXT[lang]["title"], f"<p>{html.escape(TEXT[lang]['expired_form'])}</p>"), 403)
        response = web.HTTPSeeOther("/signin")
        await self.gate.end_session(request, response)
        raise response

    # ------------------------------------------------------------------ single sign-on
    async def oidc_start(self, request: web.Request) -> web.StreamResponse:
        if self.oidc is None:
            raise web.HTTPNotFound()
        response = web.HTTPFound("/")
        browser, _ = await self.gate.signin_binding(request, response)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        try:
            url = await self.oidc.authorization_url(state, nonce, challenge)
        except ProviderUnavailable as exc:
            log.warning("identity provider unavailable: %s", exc)
            return await self._signin_form(
                request, error=TEXT[page_lang(request, self.default_lang)]["unavailable"], status=503
            )
        await self.gate.store.create_signin_attempt(
            self.gate.state_hash(state),
            self.gate.browser_hash(browser),
            verifier,
            nonce,
            ttl_seconds=SIGNIN_ATTEMPT_SECONDS,
        )
        response.headers["Location"] = url
        raise response

    async def oidc_callback(self, request: web.Request) -> web.StreamResponse:
        if self.oidc is None:
            raise web.HTTPNotFound()
        lang = page_lang(request, self.default_lang)
        t = TEXT[lang]
        address = self.gate.client_address(request)
        try:
            self.gate.check_budget(address)
        except AuthFailure as exc:
            seconds = str(exc.retry_after or 1)
            return await self._signin_form(
                request, error=t["rate_limited"].format(seconds=seconds), status=429, headers={"Retry-After": seconds}
            )
        state, code = request.query.get("state", ""), request.query.get("code", "")
        browser = request.cookies.get(self.gate.signin_cookie)
        if "error" in request.query or not state or not code or len(state) > 200 or len(code) > 2000:
            return await self._sso_failed(
                request, address, "provider_error" if "error" in request.query else "malformed"
            )
        attempt = await self.gate.store.take_signin_attempt(self.gate.state_hash(state))
        if attempt is None:
            return await self._sso_failed(request, address, "unknown_state")
        browser_hash, verifier, nonce = attempt
        if browser is None or not secrets.compare_digest(self.gate.browser_hash(browser), browser_hash):
            return await self._sso_failed(request, address, "other_browser")
        try:
            principal = await self.oidc.sign_in(code, verifier, nonce)
        except TokenRejected as exc:
            if exc.reason == "claims":
                log.info("single sign-on without a usable clientpulse identity: %s", exc)
                metrics.AUTH_FAILURES.labels(reason="claims").inc()
                provider = html.escape(self.oidc.config.provider_name)
                return await self._signin_form(request, error=t["sso_no_role"].format(provider=provider), status=403)
            return await self._sso_failed(request, address, exc.reason)
        except ProviderUnavailable as exc:
            log.warning("identity provider unavailable: %s", exc)
            return await self._signin_form(request, error=t["unavailable"], status=503)
        response = web.HTTPSeeOther("/")
        await self.gate.start_session(response, self.gate.resolve(principal), "oidc")
        log.info("signed in with single sign-on: %s (%s)", principal.name, principal.role)
        raise response

    async def _sso_failed(self, request: web.Request, address: str, reason: str) -> web.Response:
        self.gate.budget.spend(address)
        metrics.AUTH_FAILURES.labels(reason=reason).inc()
        log.info("single sign-on failed from %s: %s", address, reason)
        return await self._signin_form(
            request, error=TEXT[page_lang(request, self.default_lang)]["sso_failed"], status=401
        )

    # ------------------------------------------------------------------ assets
    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        content_type = STATIC_FILES.get(name)
        if content_type is None:
            raise web.HTTPNotFound()
        data: Any = resources.files("streams.api").joinpath("static", name).read_bytes()
        return web.Response(body=data, content_type=content_type, headers={"Cache-Control": "public, max-age=3600"})
