// Landing page: shows the demo accounts when the server runs with --demo.

import { Api, describeError } from "./api.js";
import { $, h } from "./ui.js";

const LABELS = { agent: "Agent console", admin: "Supervisor" };

async function showDemoAccounts() {
  let config;
  try {
    config = await Api.config();
  } catch (error) {
    $(".notice-error").textContent = describeError(error);
    return;
  }
  const demo = config && config.demo;
  if (!demo) return;
  $("#demo-accounts").replaceChildren(
    ...Object.entries(demo).map(([role, account]) =>
      h(
        "div",
        { class: "field", dataset: { role } },
        h("dt", {}, LABELS[role] || role),
        h("dd", {}, "username ", h("code", {}, account.username), ", password as printed by the server at start-up"),
      ),
    ),
  );
  $("#demo").hidden = false;
}

showDemoAccounts();
