// ktune web app: plain JavaScript, no build step, nothing loaded from elsewhere (it must work offline).
// $, KEY, headers, authFetch and el come from common.js.
"use strict";

const PROVENANCE = "\n相关知识：";

const api = authFetch;  // common.js

async function errorText(r) {
  try {
    const body = await r.json();
    return (body.error && body.error.message) || r.statusText;
  } catch (e) {
    return r.status + " " + r.statusText;
  }
}

// --- tabs, key, about ------------------------------------------------------------------------
document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
  document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.id !== "tab-" + tab.dataset.tab; });
}));

$("#save-key").addEventListener("click", () => {
  localStorage.setItem(KEY, $("#api-key").value.trim());
  $("#auth").hidden = true;
});

async function loadAbout() {
  const r = await fetch("/health");
  if (!r.ok) return;
  const h = await r.json();
  $("#about").textContent = `模型 ${h.model}（${h.base_model || "?"}） · 知识库版本 ${h.kb_version} · 队列 ${h.queue_depth}`;
  if (h.auth && !localStorage.getItem(KEY)) $("#auth").hidden = false;
}

// --- server-sent events over fetch (EventSource cannot POST or send a key) ----------------------
async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

// --- ask -------------------------------------------------------------------------------------
const REASONS = {
  no_query: "模型没有从问题中识别出可查询的医学实体",
  entity_not_in_kb: "生成的实体不在知识库中",
  no_attribute: "没有识别出要查询的属性",
  no_knowledge: "知识库有该实体，但没有这个属性的信息",
  outside_kb: "问的是知识库不收录的信息（费用、医院、住院天数）",
};

function bodyOf(answer) {
  const i = answer.indexOf(PROVENANCE);
  return i >= 0 ? answer.slice(0, i) : answer;
}

function showLookup(a) {
  $("#result").hidden = false;
  $("#q-entity").textContent = a.query.entity || "无";
  $("#q-attribute").textContent = a.query.attribute || "—";
  $("#q-linked").textContent = a.linked_entity || "（未链接到知识库条目）";
  $("#q-method").textContent = a.link_method ? `${a.link_method}${a.link_score != null ? "（" + a.link_score.toFixed(2) + "）" : ""}` : "—";
  $("#q-kb").textContent = a.kb_version;
  const tbody = $("#knowledge tbody");
  tbody.replaceChildren();
  for (const [entity, preds] of Object.entries(a.knowledge || {})) {
    for (const [pred, values] of Object.entries(preds)) {
      const tr = el("tr");
      tr.append(el("td", {}, entity), el("td", {}, pred));
      const td = el("td");
      for (const v of values) td.append(el("span", { class: "value", "data-value": v }, v));
      tr.append(td);
      tbody.append(tr);
    }
  }
  const empty = !Object.keys(a.knowledge || {}).length;
  $("#knowledge").hidden = empty;
  $("#no-knowledge").hidden = !empty;
}

function highlightCited(text) {
  document.querySelectorAll("#knowledge .value").forEach((span) => {
    span.classList.toggle("cited", text.includes(span.dataset.value));
  });
}

function showDone(a) {
  showLookup(a);
  const answer = $("#answer");
  answer.classList.remove("streaming");
  const refusal = $("#refusal");
  if (a.refused) {
    refusal.hidden = false;
    refusal.replaceChildren(
      el("strong", {}, "拒答：知识库中没有可用的信息"),
      el("span", {}, `${REASONS[a.refusal_reason] || a.refusal_reason}。查询：${a.query.entity || "无"} | ${a.query.attribute || "—"}` +
        (a.linked_entity ? `，知识库条目：${a.linked_entity}` : "，未找到对应的知识库条目")),
    );
  }
  if (a.answer === null) {
    answer.textContent = "（只查询了知识库，没有生成回答）";
    $("#provenance-line").textContent = "";
    return;
  }
  const body = bodyOf(a.answer);
  answer.textContent = body;
  $("#provenance-line").textContent = a.answer.slice(body.length).trim();
  highlightCited(body);
}

async function ask(event) {
  event.preventDefault();
  const question = $("#question").value.trim();
  if (!question) return;
  const button = $("#ask-button");
  button.disabled = true;
  $("#status").className = "status";
  $("#status").textContent = "查询知识库…";
  $("#refusal").hidden = true;
  $("#answer").textContent = "";
  $("#provenance-line").textContent = "";
  $("#result").hidden = true;
  const started = performance.now();
  try {
    const r = await api("/v1/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question, stream: true, with_answer: !$("#lookup-only").checked }),
    });
    if (!r.ok) throw new Error(await errorText(r));
    let streamed = "";
    for await (const { event, data } of sse(r)) {
      if (event === "lookup") {
        showLookup(data);
        $("#answer").classList.add("streaming");
        $("#status").textContent = "生成回答…";
      } else if (event === "delta") {
        streamed += data.text;
        $("#answer").textContent = bodyOf(streamed);
        highlightCited(bodyOf(streamed));
      } else if (event === "done") {
        showDone(data);
        $("#status").textContent = `完成，用时 ${((performance.now() - started) / 1000).toFixed(1)} 秒`;
        $("#status").dataset.done = "1";
      } else if (event === "error") {
        throw new Error(data.error.message);
      }
    }
  } catch (e) {
    $("#status").className = "status error";
    $("#status").textContent = "出错：" + e.message;
  } finally {
    $("#answer").classList.remove("streaming");
    button.disabled = false;
  }
}

$("#ask-form").addEventListener("submit", ask);
$("#question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("#ask-form").requestSubmit(); }
});

// --- KB browser ------------------------------------------------------------------------------
async function showEntity(entity) {
  const r = await api("/v1/kb/" + encodeURIComponent(entity));
  const tbody = $("#kb-entry tbody");
  tbody.replaceChildren();
  if (!r.ok) { $("#kb-status").textContent = await errorText(r); return; }
  const body = await r.json();
  $("#kb-entity-title").textContent = `${entity}${body.kind ? "（" + body.kind + "）" : ""}`;
  for (const [pred, values] of Object.entries(body.knowledge[entity] || {})) {
    const tr = el("tr");
    tr.append(el("td", {}, pred));
    const td = el("td");
    for (const v of values) td.append(el("span", { class: "value" }, v));
    tr.append(td);
    tbody.append(tr);
  }
}

async function searchKB(event) {
  event.preventDefault();
  const name = $("#kb-name").value.trim();
  if (!name) return;
  $("#kb-status").textContent = "";
  const list = $("#kb-links");
  list.replaceChildren();
  const r = await api(`/v1/kb/link/${encodeURIComponent(name)}?k=10`);
  if (!r.ok) { $("#kb-status").textContent = await errorText(r); return; }
  const links = await r.json();
  if (!links.length) { $("#kb-status").textContent = `知识库中找不到“${name}”`; return; }
  for (const link of links) {
    const li = el("li");
    const button = el("button", { type: "button", "data-entity": link.entity }, link.entity);
    button.addEventListener("click", () => showEntity(link.entity));
    li.append(button, el("span", { class: "meta" }, `${link.method} · ${Number(link.score).toFixed(2)}`));
    list.append(li);
  }
  showEntity(links[0].entity);
}

$("#kb-form").addEventListener("submit", searchKB);
loadAbout();
