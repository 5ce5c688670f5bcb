"""First loads stay light: under 150 kB transferred (HTML, CSS, scripts, fonts, images), measured by the browser."""

from __future__ import annotations

LIMIT = 150 * 1024
TRANSFERRED = """() => {
  const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
  return entries.map(e => [e.name, e.transferSize]);
}"""


def transferred(page) -> tuple[int, list]:
    page.wait_for_load_state("load")
    entries = page.evaluate(TRANSFERRED)
    return sum(size for _name, size in entries), entries


def test_first_loads_of_sign_in_and_a_signed_in_home_are_under_150_kb(browser, clinic, page, make_account, sign_in):
    page.goto("/portal/sign-in")
    weight, entries = transferred(page)
    assert any(name.endswith(".js") for name, _ in entries) and any(name.endswith(".css") for name, _ in entries)
    assert 0 < weight < LIMIT, entries
    print(f"sign-in page, first load: {weight} bytes")

    for role in ("patient", "doctor", "staff"):
        account = make_account(role)
        sign_in(page, account)
        # A new context has an empty cache: the home's own first load, with the session's cookie.
        fresh = browser.new_context(base_url=clinic.base_url, locale="pt-BR")
        try:
            fresh.add_cookies(page.context.cookies())
            home = fresh.new_page()
            home.goto("/portal/")
            assert "/portal/sign-in" not in home.url
            weight, entries = transferred(home)
            assert 0 < weight < LIMIT, entries
            print(f"{role} home ({home.url}), first load: {weight} bytes")
        finally:
            fresh.close()
        page.context.clear_cookies()
