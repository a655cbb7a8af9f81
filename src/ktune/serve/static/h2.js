// H2 expert rating: blinded answers side by side, 1-5 scales, saved on the server per rater and item code.
// $, KEY, headers, authFetch and el come from common.js.
"use strict";

const RATER = "ktune-h2-rater";
const LABELS = { helpfulness: "有用性", harmlessness: "无害性" };
let data = null;

async function api(path, options) {
  const r = await authFetch(path, options);
  if (!r.ok) {
    let message = r.status + " " + r.statusText;
    try { message = (await r.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return r;
}

function status(text, error) {
  $("#status").textContent = text;
  $("#status").className = error ? "status error" : "status";
}

function scale(code, dim, value) {
  const row = el("div", { class: "scale" });
  row.append(el("span", { class: "dim" }, LABELS[dim] || dim));
  for (let v = 1; v <= 5; v++) {
    const label = el("label");
    const input = el("input", { type: "radio", name: `${code}-${dim}`, value: String(v), "data-testid": `${code}-${dim}-${v}` });
    if (value === v) input.checked = true;
    label.append(input, document.createTextNode(String(v)));
    row.append(label);
  }
  return row;
}

function render(ratings) {
  const box = $("#items");
  box.replaceChildren();
  let rated = 0;
  for (const item of data.items) {
    const card = el("section", { class: "h2-item", "data-testid": `item-${item.n}` });
    card.append(el("h2", {}, `${item.n}. ${item.question}`));
    const grid = el("div", { class: "h2-answers" });
    for (const a of item.answers) {
      const r = ratings[a.code] || {};
      if (r.helpfulness && r.harmlessness) rated++;
      const col = el("div", { class: "h2-answer", "data-code": a.code });
      col.append(el("div", { class: "code" }, "回答 " + a.code), el("div", { class: "answer" }, a.answer));
      for (const dim of data.dimensions) col.append(scale(a.code, dim, r[dim]));
      const comment = el("textarea", { rows: "2", placeholder: "备注（可选）", "data-testid": `${a.code}-comment` });
      comment.value = r.comment || "";
      col.append(comment);
      grid.append(col);
    }
    const save = el("button", { type: "button", "data-testid": `save-${item.n}` }, "保存本题");
    save.addEventListener("click", () => saveItem(card, item));
    card.append(grid, save);
    box.append(card);
  }
  const total = data.items.reduce((n, it) => n + it.answers.length, 0);
  status(`已评 ${rated} / ${total} 个回答`);
}

async function saveItem(card, item) {
  const rater = $("#rater").value.trim();
  try {
    for (const a of item.answers) {
      const body = { rater, code: a.code, comment: card.querySelector(`[data-code='${a.code}'] textarea`).value };
      for (const dim of data.dimensions) {
        const checked = card.querySelector(`input[name='${a.code}-${dim}']:checked`);
        body[dim] = checked ? Number(checked.value) : null;
      }
      await api("/v1/h2/ratings", { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    }
    await load();
    status(`第 ${item.n} 题已保存。` + $("#status").textContent);
  } catch (e) {
    status("保存失败：" + e.message, true);
  }
}

async function load() {
  const rater = $("#rater").value.trim();
  if (!rater) { status("请先填写评分人", true); return; }
  localStorage.setItem(RATER, rater);
  try {
    if (!data) {
      data = await (await api("/v1/h2/items")).json();
      $("#rubric").textContent = data.rubric;
      $("#rubric-version").textContent = "（" + data.rubric_version + "）";
    }
    const ratings = await (await api("/v1/h2/ratings?rater=" + encodeURIComponent(rater))).json();
    render(ratings);
    $("#export").disabled = false;
  } catch (e) {
    status(e.message, true);
  }
}

async function exportCsv() {
  const rater = $("#rater").value.trim();
  try {
    const r = await api("/v1/h2/export?rater=" + encodeURIComponent(rater));
    const link = el("a", { href: URL.createObjectURL(await r.blob()), download: rater + ".csv" });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (e) {
    status("导出失败：" + e.message, true);
  }
}

$("#save-key").addEventListener("click", () => {
  localStorage.setItem(KEY, $("#api-key").value.trim());
  $("#auth").hidden = true;
  if ($("#rater").value.trim()) load();
});
$("#rater-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
$("#export").addEventListener("click", exportCsv);
$("#rater").value = localStorage.getItem(RATER) || "";
fetch("/health").then((r) => r.json()).then((h) => { if (h.auth && !localStorage.getItem(KEY)) $("#auth").hidden = false; });
