"""The waiting-room page: plain HTML and EventSource, no build step.

A user presses "get coupon"; the page issues, then either streams the status
(issued) or shows the place in the room and the estimated wait, read every
second, until the room answers; then the coupon code or the reason. A user the
room is serving this instant (ADMITTED) is out of line, so the page says so
rather than "position 0 of 0". The answer replaces the waiting line. In header
identity mode the page sends the user id it is given (a demo of the API behind
a gateway that would set it).
"""

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

ROOM_POLL_MS = 1000
"""How long the page waits after one answer of the room before it asks again: every
waiting user's page asks about once a second, a load on the instances that grows with
the room (the twin check's load generator polls alike)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>couponsim: get a coupon</title>
<style>body{font-family:sans-serif;max-width:32em;margin:2em auto}output{display:block;
margin-top:1em;font-size:1.2em}</style></head>
<body><h1>Flash sale</h1>
<label>User <input id="user" value="user-1"></label>
<label>Coupon <input id="coupon" value="black-friday"></label>
<button id="get">Get coupon</button>
<output id="state">Press the button at the start of the sale.</output>
<output id="result"></output>
<script>
const $ = (id) => document.getElementById(id);
function show(text) { $("state").textContent = text; }
function finish(text) { show(""); $("result").textContent = text; }
function stream(url) {
  const source = new EventSource(url);
  source.addEventListener("status", (event) => {
    const status = JSON.parse(event.data);
    if (status.status === "COMPLETED") {
      finish("Your coupon: " + status.couponCode); source.close();
    }
    else if (status.status === "FAILED") { finish("No coupon: " + status.message); source.close(); }
    else { show("Issuing your coupon..."); }
  });
  source.addEventListener("timeout", () => { finish("No answer yet: try later"); source.close(); });
}
async function wait(coupon, headers) {
  const answer = await (await fetch(`/api/v1/coupons/${coupon}/waiting-room`, {headers})).json();
  if (answer.state === "WAITING") {
    const eta = answer.estimatedWaitTime === null ? "estimating"
      : `about ${Math.ceil(answer.estimatedWaitTime)} s`;
    show(`In line: position ${answer.queuePosition} of ${answer.queueSize}, estimated wait ${eta}`);
    setTimeout(() => wait(coupon, headers), ROOM_POLL_MS);
  } else if (answer.state === "ADMITTED") {
    show("Your turn: issuing your coupon...");
    setTimeout(() => wait(coupon, headers), ROOM_POLL_MS);
  } else if (answer.state === "ISSUED" && answer.statusUrl) { stream(answer.statusUrl); }
  else { finish("No coupon: " + answer.state); }
}
$("get").addEventListener("click", async () => {
  const coupon = $("coupon").value, headers = {"X-User-ID": $("user").value};
  $("result").textContent = "";  // an earlier click's answer is not this one's
  const response = await fetch("/api/v1/coupons/issue", {method: "POST",
    headers: {...headers, "Content-Type": "application/json"},
    body: JSON.stringify({couponId: coupon})});
  const body = await response.json();
  if (response.status !== 202) { finish("No coupon: " + body.title); return; }
  if (body.status === "PROCESSING") {
    show("Issuing your coupon...");
    stream(response.headers.get("Location"));
  } else { wait(coupon, headers); }
});
</script></body></html>
""".replace("ROOM_POLL_MS", str(ROOM_POLL_MS))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def waiting_room_page() -> str:
    return PAGE
