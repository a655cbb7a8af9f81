// Shared by the web app (app.js) and the H2 rating page (h2.js): the API key, fetch with it, element helpers.
// Plain JavaScript, no build step, nothing loaded from elsewhere (it must work offline).
"use strict";

const $ = (sel) => document.querySelector(sel);
const KEY = "ktune-api-key";

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = localStorage.getItem(KEY);
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

// fetch with the stored API key; a 401 shows the key form (#auth)
async function authFetch(path, options) {
  const r = await fetch(path, Object.assign({}, options, { headers: headers((options || {}).headers) }));
  if (r.status === 401) $("#auth").hidden = false;
  return r;
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
