// REST client of API.md, the session kept in sessionStorage, and readable error messages.

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0: the server could not be reached
    this.code = code;
    this.details = details; // the error object's other fields, e.g. call_id
  }
}

export function unreachable() {
  return new ApiError(0, "unreachable", "The server cannot be reached. Check that it is running and your network, then try again.");
}

// The API's error shape {"error": {"code", "message"}}, or the bare HTTP status.
export async function errorFrom(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    // Not JSON: a proxy's error page, or an empty body.
  }
  return new ApiError(
    response.status,
    (error && error.code) || "http_error",
    (error && error.message) || `The server answered ${response.status} ${response.statusText}.`.replace(" .", "."),
    error || {},
  );
}

export class Api {
  constructor(token = null) {
    this.token = token;
  }

  async request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw unreachable();
    }
    if (!response.ok) throw await errorFrom(response);
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body = {}) {
    return this.request("POST", path, body);
  }

  // -- the routes the pages use ----------------------------------------------------------

  static config() {
    return new Api().get("/api/config");
  }

  static login(username, password) {
    return new Api().post("/api/auth/login", { username, password });
  }

  static customerSession(details) {
    return new Api().post("/api/auth/customer", details);
  }

  createCall(reason) {
    return this.post("/api/calls", reason ? { reason } : {});
  }

  listCalls(state) {
    return this.get(`/api/calls?state=${encodeURIComponent(state)}`);
  }

  getCall(callId) {
    return this.get(`/api/calls/${encodeURIComponent(callId)}`);
  }

  accept(callId) {
    return this.post(`/api/calls/${encodeURIComponent(callId)}/accept`);
  }

  verify(callId, customerId = null) {
    return this.post(`/api/calls/${encodeURIComponent(callId)}/verify`, customerId ? { customer_id: customerId } : {});
  }

  end(callId) {
    return this.post(`/api/calls/${encodeURIComponent(callId)}/end`);
  }

  messages(callId, after = 0) {
    return this.get(`/api/calls/${encodeURIComponent(callId)}/messages?after=${after}`);
  }

  summary(callId) {
    return this.get(`/api/calls/${encodeURIComponent(callId)}/summary`);
  }

  // The summary is written just after a call ends: ask again for a while. Null if the
  // call has none (no summary engine).
  async waitForSummary(callId, { retries = 0, stillWanted = () => true } = {}) {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await this.summary(callId)).summary;
      } catch (error) {
        const pending = error instanceof ApiError && (error.status === 409 || error.code === "summary_not_found");
        if (!pending) throw error;
        if (attempt >= retries || !stillWanted()) return null;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  iceServers() {
    return this.get("/api/webrtc/ice-servers");
  }

  offer(callId, description) {
    return this.post(`/api/calls/${encodeURIComponent(callId)}/offer`, {
      sdp: description.sdp,
      type: description.type,
    });
  }

  stats() {
    return this.get("/api/stats");
  }
}

// One entry per page ("customer", "agent", "supervisor"): {token, ..., callId}.
export const sessionStore = {
  load(page) {
    try {
      return JSON.parse(sessionStorage.getItem(`callassist.${page}`)) || null;
    } catch {
      return null;
    }
  },
  save(page, value) {
    sessionStorage.setItem(`callassist.${page}`, JSON.stringify(value));
  },
  update(page, changes) {
    const value = { ...(this.load(page) || {}), ...changes };
    this.save(page, value);
    return value;
  },
  clear(page) {
    sessionStorage.removeItem(`callassist.${page}`);
  },
};

export function describeError(error) {
  return (error && error.message) || String(error);
}

export function isSessionError(error) {
  return error instanceof ApiError && error.status === 401;
}
