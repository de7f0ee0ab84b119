// Staff sign-in shared by the agent console and the supervisor page: the login form, the
// token in sessionStorage, "Log out", and the demo account hint from /api/config.

import { Api, describeError, isSessionError, sessionStore } from "./api.js";
import { $, h } from "./ui.js";

const ROLE_NAMES = { agent: "an agent", admin: "an admin" };

export class StaffSession {
  // onSignedIn(api, saved) and onSignedOut() switch the page between its two views.
  constructor({ page, role, notices, onSignedIn, onSignedOut }) {
    this.page = page;
    this.role = role;
    this.notices = notices;
    this.onSignedIn = onSignedIn;
    this.onSignedOut = onSignedOut;
    this.loginSection = $("#login");
    this.form = $("#login-form");
    this.whoami = $("#whoami");
    this.logoutButton = $("#logout");
    this.api = null;
    this.form.addEventListener("submit", (event) => this._login(event));
    this.logoutButton.addEventListener("click", () => this.logout());
  }

  get saved() {
    return sessionStore.load(this.page) || {};
  }

  update(changes) {
    return sessionStore.update(this.page, changes);
  }

  start() {
    const saved = this.saved;
    if (saved.token && saved.role === this.role) this._signedIn(saved);
    else this._showLogin();
  }

  async _login(event) {
    event.preventDefault();
    this.notices.clearError();
    const username = this.form.elements.username.value.trim();
    const password = this.form.elements.password.value;
    if (!username || !password) {
      this.notices.error("Enter your username and password.");
      (username ? this.form.elements.password : this.form.elements.username).focus();
      return;
    }
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const session = await Api.login(username, password);
      if (session.role !== this.role) {
        this.notices.error(`This page needs ${ROLE_NAMES[this.role]} account; ${session.username} is ${ROLE_NAMES[session.role] || session.role}.`);
        return;
      }
      this.form.reset();
      sessionStore.save(this.page, { token: session.token, role: session.role, username: session.username });
      this._signedIn(this.saved);
    } catch (error) {
      this.notices.error(error);
      this.form.elements.password.select();
    } finally {
      button.disabled = false;
    }
  }

  _signedIn(saved) {
    this.api = new Api(saved.token);
    this.loginSection.hidden = true;
    this.whoami.textContent = `Signed in as ${saved.username}`;
    this.whoami.hidden = false;
    this.logoutButton.hidden = false;
    this.onSignedIn(this.api, saved);
  }

  _showLogin() {
    this.api = null;
    this.loginSection.hidden = false;
    this.whoami.hidden = true;
    this.logoutButton.hidden = true;
    this._demoHint();
    this.form.elements.username.focus();
  }

  logout(message = "") {
    sessionStore.clear(this.page);
    this.onSignedOut();
    this._showLogin();
    if (message) this.notices.error(message);
    else this.notices.clearError();
  }

  // A 401 anywhere means the token expired or the server's key changed: sign in again.
  handleError(error) {
    if (isSessionError(error)) this.logout(`Your session has ended (${describeError(error)}). Log in again.`);
    else this.notices.error(error);
  }

  async _demoHint() {
    const hint = $("#demo-hint");
    let config;
    try {
      config = await Api.config();
    } catch {
      return; // the form itself reports an unreachable server on submit
    }
    const demo = config && config.demo && config.demo[this.role];
    if (!demo) return;
    // The server never sends the password: it prints it to its console and keeps it in
    // demo_credentials.json (0600) in its data dir.
    const fill = () => {
      this.form.elements.username.value = demo.username;
      this.form.elements.password.focus();
    };
    hint.replaceChildren(
      "Demo server: username ", h("code", {}, demo.username),
      ", password as printed by the server at start-up (also in demo_credentials.json in its data dir). ",
      h("button", { type: "button", class: "link", onclick: fill }, "Fill in the demo username"),
    );
    hint.hidden = false;
  }
}
