/*
 * architect.js: a dependency-free browser client for the Architect API.
 *
 * Speaks the wire protocol of mephisto-task 2.0.4 (see docs/protocol.md): registration
 * and submission over HTTP, live updates, heartbeats and statuses over the
 * WebSocket at "/", remote procedure calls as live updates. Served by the
 * Architect router at /architect.js; load it with a plain <script> tag.
 *
 *   const task = Architect.connect({ onStatus, onLiveUpdate, onConnectionChange });
 *   await task.ready;
 *   task.initData ...; await task.submit({ answer: 42 });
 *
 * docs/architect-js.md describes the whole interface.
 */
(function (root) {
  "use strict";

  // The mephisto-task version whose protocol this client speaks.
  const PROTOCOL_VERSION = "2.0.4";

  const DEFAULTS = {
    baseUrl: null, // default: the page's origin
    socketUrl: null, // default: ws(s)://<page host>:<page port>/
    autoLive: false, // open the live socket as soon as registration gives an agent
    heartbeatInterval: 6000, // ms between heartbeats
    firstHeartbeatDelay: 500, // ms from `alive` to the first heartbeat
    missedHeartbeats: 5, // unanswered heartbeats before the socket is reopened
    reconnectMinDelay: 500, // ms before the first reconnection attempt
    reconnectMaxDelay: 10000, // ms, the backoff's ceiling
    backendDeadAfter: 20000, // ms of backend silence (last_mephisto_ping) reported as "backend_away"
    rpcTimeout: 30000, // ms a remote procedure call waits for its answer
    rememberedUpdateIds: 10000, // client-bound update ids kept for dropping duplicates
    resyncOnReconnect: true, // after a reconnection, fetch the updates a half-dead socket lost
  };

  const CONNECTION = {
    IDLE: "idle", // no live socket asked for
    CONNECTING: "connecting", // the first socket is opening
    CONNECTED: "connected", // open, `alive` sent
    RECONNECTING: "reconnecting", // the socket dropped or went silent; trying again
    BACKEND_AWAY: "backend_away", // the router answers but has not heard the backend for long
    CLOSED: "closed", // task.close() was called
  };

  // Statuses after which an agent takes no more live traffic.
  const FINAL_STATUSES = [
    "completed", "disconnect", "timeout", "partner disconnect", "expired", "returned",
    "approved", "soft_rejected", "rejected", "mephisto disconnect",
  ];

  const MOBILE_TEXT =
    "Sorry, this task cannot be done on a phone or tablet. Please use a computer.";

  function pythonTime() {
    return Date.now() / 1000;
  }

  function newId() {
    if (root.crypto && typeof root.crypto.randomUUID === "function") {
      return root.crypto.randomUUID();
    }
    const bytes = new Uint8Array(16);
    if (root.crypto && typeof root.crypto.getRandomValues === "function") {
      root.crypto.getRandomValues(bytes);
    } else {
      for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return (
      hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" +
      hex.slice(16, 20) + "-" + hex.slice(20)
    );
  }

  function isMobile() {
    const agent = (root.navigator && root.navigator.userAgent) || "";
    return /Android|webOS|iPhone|iPad|iPod|BlackBerry|IEMobile|Opera Mini/i.test(agent);
  }

  function globalFunction(name) {
    const value = root[name];
    return typeof value === "function" ? value : null;
  }

  let pageTabId = null; // when the browser keeps no sessionStorage

  /**
   * This tab's own random id, kept across its reloads (sessionStorage is per tab). The
   * mock provider's URL is no secret: the registration id made of it alone would let
   * another tab or browser with the same URL ask for the same agent.
   */
  function tabId() {
    const key = "architect-tab-id";
    try {
      let id = root.sessionStorage.getItem(key);
      if (!id) {
        id = newId();
        root.sessionStorage.setItem(key, id);
      }
      return id;
    } catch (e) {
      pageTabId = pageTabId || newId(); // storage refused: a reload gets a new agent
      return pageTabId;
    }
  }

  /** The crowd provider's registration data: its globals when the page defines them, else the mock provider's URL parameters. */
  function providerData() {
    const getAgentRegistration = globalFunction("getAgentRegistration");
    if (getAgentRegistration) return getAgentRegistration();
    const params = new URLSearchParams(root.location.search);
    const workerName = params.get("worker_id");
    const assignmentId = params.get("assignment_id");
    return {
      worker_name: workerName,
      agent_registration_id: assignmentId + "-" + workerName + "-" + tabId(),
      assignment_id: assignmentId,
      provider_type: "mock",
    };
  }

  function providerIds() {
    const getWorkerName = globalFunction("getWorkerName");
    const getAssignmentId = globalFunction("getAssignmentId");
    const params = new URLSearchParams(root.location.search);
    return {
      workerName: getWorkerName ? getWorkerName() : params.get("worker_id"),
      assignmentId: getAssignmentId ? getAssignmentId() : params.get("assignment_id"),
    };
  }

  /** An error answered by the router (HTTP status `status`, body `body`). */
  class ArchitectError extends Error {
    constructor(message, status, body) {
      super(message);
      this.name = "ArchitectError";
      this.status = status;
      this.body = body;
    }
  }

  /** A remote procedure call that failed on the server, or got no answer in time. */
  class RemoteError extends Error {
    constructor(message, target, details) {
      super(message);
      this.name = "RemoteError";
      this.target = target;
      this.details = details;
    }
  }

  /** A set that forgets its oldest keys past `limit`. */
  class RecentIds {
    constructor(limit) {
      this.limit = limit;
      this.keys = new Set();
    }
    has(key) {
      return this.keys.has(key);
    }
    add(key) {
      this.keys.add(key);
      if (this.keys.size > this.limit) {
        this.keys.delete(this.keys.values().next().value);
      }
    }
  }

  class Task {
    constructor(options) {
      this.options = Object.assign({}, DEFAULTS, options || {});
      this.baseUrl = (this.options.baseUrl || root.location.origin).replace(/\/$/, "");

      this.taskConfig = null;
      this.agentId = null;
      this.workerId = null;
      this.initData = null;
      this.failureReason = null;
      this.isOnboarding = false;
      this.isBlocked = false;
      this.isPreview = false;
      this.status = null;
      this.connection = CONNECTION.IDLE;
      this.lastMephistoPing = null; // ms since epoch, from heartbeat replies

      this._socket = null;
      this._liveWanted = false;
      this._queue = []; // packets waiting for a socket, in order
      this._inFlight = []; // [packet, heartbeat index] sent on this socket, not yet known received
      this._heartbeatsSent = 0; // on the current socket
      this._heartbeatsAnswered = 0; // on the current socket
      this._heartbeatTimer = null;
      this._firstHeartbeatTimer = null;
      this._reconnectTimer = null;
      this._reconnectAttempts = 0;
      this._everConnected = false;
      this._seenUpdateIds = new RecentIds(this.options.rememberedUpdateIds);
      this._pendingCalls = new Map(); // request id -> {resolve, reject, timer, target}
      this._onOnline = () => {
        if (this._liveWanted && this._socket === null) this._openSocket(true);
      };

      this.ready = this._register();
      // The page handles failures through `ready` or onError; never an unhandled rejection.
      this.ready.catch(() => {});
    }

    // --- callbacks ---

    _emit(name, ...args) {
      const callback = this.options[name];
      if (typeof callback !== "function") return;
      try {
        callback(...args);
      } catch (error) {
        if (root.console) root.console.error("architect.js: " + name + " failed", error);
      }
    }

    _setConnection(state) {
      if (state === this.connection) return;
      const previous = this.connection;
      this.connection = state;
      this._emit("onConnectionChange", state, previous);
    }

    _setStatus(status) {
      if (typeof status !== "string" || status === this.status) return;
      const previous = this.status;
      this.status = status;
      this._emit("onStatus", status, previous);
    }

    // --- HTTP ---

    async _request(method, path, body) {
      const init = { method: method, headers: {}, credentials: "same-origin" };
      if (body instanceof FormData) {
        init.body = body;
      } else if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      const response = await root.fetch(this.baseUrl + path, init);
      const text = await response.text();
      let answer = null;
      try {
        answer = text ? JSON.parse(text) : null;
      } catch (error) {
        answer = text;
      }
      if (!response.ok) {
        const message =
          answer && typeof answer === "object" && answer.error
            ? answer.error
            : method + " " + path + " answered " + response.status;
        throw new ArchitectError(message, response.status, answer);
      }
      return answer;
    }

    _requireAgent() {
      if (!this.agentId) {
        throw new ArchitectError("this page has no agent (not registered, or refused)", 0, null);
      }
    }

    // --- registration ---

    async _register() {
      try {
        this.taskConfig = await this._request(
          "GET",
          "/task_config.json?mephisto_task_version=" + encodeURIComponent(PROTOCOL_VERSION)
        );
        if (this.taskConfig && this.taskConfig.block_mobile && isMobile()) {
          this.isBlocked = true;
          this.failureReason = MOBILE_TEXT;
          this._emit("onReady", this);
          return this;
        }
        const ids = providerIds();
        if (ids.workerName === null || ids.assignmentId === null) {
          this.isPreview = true;
          this._emit("onReady", this);
          return this;
        }
        const packet = await this._request("POST", "/request_agent", {
          provider_data: providerData(),
          client_timestamp: pythonTime(),
        });
        this._takeAgentDetails(packet);
        this._emit("onReady", this);
        return this;
      } catch (error) {
        this._emit("onError", error);
        throw error;
      }
    }

    _takeAgentDetails(packet) {
      const data = (packet && packet.data) || {};
      const previousAgent = this.agentId;
      this.workerId = data.worker_id === undefined ? null : data.worker_id;
      this.agentId = data.agent_id || null;
      this.failureReason = data.failure_reason || null;
      this.isBlocked = this.agentId === null;
      this.isOnboarding = this.agentId !== null && this.agentId.startsWith("onboarding");
      this.initData = this.agentId === null ? null : data.init_task_data || null;
      const past = this.initData && this.initData.past_live_updates;
      if (Array.isArray(past)) {
        for (const update of past) {
          if (update && update.update_id !== undefined) this._seenUpdateIds.add(update.update_id);
          this._emit("onLiveUpdate", update, { replayed: true });
        }
      }
      if (this._liveWanted && this.agentId !== previousAgent) {
        // A socket speaks for one agent only: onboarding -> unit needs a new one.
        this._dropSocket();
        this._queue = [];
        this._inFlight = [];
        if (this.agentId) this._openSocket(false);
      }
      if (this.agentId && this.options.autoLive && !this.isOnboarding) this.connectLive();
    }

    // --- submissions ---

    /** Submit the final data; with files (an array, FileList or {field: File}) as multipart. */
    async submit(data, files) {
      await this.ready;
      if (this.isOnboarding) return this.submitOnboarding(data);
      this._requireAgent();
      let answer;
      if (files) {
        const form = new FormData();
        form.append("USED_AGENT_ID", this.agentId);
        form.append("final_string_data", JSON.stringify(data === undefined ? {} : data));
        appendFiles(form, files);
        answer = await this._request("POST", "/submit_task", form);
      } else {
        answer = await this._request("POST", "/submit_task", {
          USED_AGENT_ID: this.agentId,
          final_data: data === undefined ? {} : data,
          client_timestamp: pythonTime(),
        });
      }
      const handleSubmitToProvider = globalFunction("handleSubmitToProvider");
      if (handleSubmitToProvider) handleSubmitToProvider(data);
      return answer;
    }

    /** Submit onboarding answers; resolves with the task, now holding its new agent (or refusal). */
    async submitOnboarding(data) {
      await this.ready;
      this._requireAgent();
      const packet = await this._request("POST", "/submit_onboarding", {
        provider_data: { USED_AGENT_ID: this.agentId, onboarding_data: data },
        client_timestamp: pythonTime(),
      });
      this._takeAgentDetails(packet);
      return this;
    }

    async submitMetadata(data) {
      await this.ready;
      this._requireAgent();
      return this._request("POST", "/submit_metadata", {
        USED_AGENT_ID: this.agentId,
        metadata: data,
        client_timestamp: pythonTime(),
      });
    }

    async logError(data) {
      await this.ready;
      this._requireAgent();
      return this._request("POST", "/log_error", {
        USED_AGENT_ID: this.agentId,
        error_data: data,
        client_timestamp: pythonTime(),
      });
    }

    // --- live ---

    /** Open the live socket (once registered); it reconnects by itself until close(). */
    connectLive() {
      if (this._liveWanted) return this.ready;
      this._liveWanted = true;
      if (root.addEventListener) root.addEventListener("online", this._onOnline);
      return this.ready.then(() => {
        if (this._liveWanted && this.agentId && this._socket === null) this._openSocket(false);
        return this;
      });
    }

    /** Send live data to the task code; resolves with the data sent (with its update_id). */
    sendLiveUpdate(data) {
      const update = Object.assign({}, data, { update_id: newId() });
      this._seenUpdateIds.add(update.update_id); // never taken back from past_live_updates
      return new Promise((resolve) => {
        this._enqueue("mephisto_bound_live_update", update, () => resolve(update));
      });
    }

    /** Call a remote procedure; resolves with its parsed response, rejects with a RemoteError. */
    callRemote(target, args, options) {
      const timeout = (options && options.timeout) || this.options.rpcTimeout;
      const requestId = newId();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this._pendingCalls.delete(requestId);
          reject(new RemoteError("no answer to " + target + " within " + timeout + " ms", target));
        }, timeout);
        this._pendingCalls.set(requestId, { resolve, reject, timer, target });
        this.sendLiveUpdate({
          request_id: requestId,
          target: target,
          args: JSON.stringify(args === undefined ? null : args),
        });
      });
    }

    /** Close the live socket for good and reject pending remote calls. */
    close() {
      this._liveWanted = false;
      if (root.removeEventListener) root.removeEventListener("online", this._onOnline);
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._dropSocket();
      for (const [requestId, call] of this._pendingCalls) {
        clearTimeout(call.timer);
        call.reject(new RemoteError("the task was closed", call.target));
        this._pendingCalls.delete(requestId);
      }
      this._setConnection(CONNECTION.CLOSED);
    }

    _packet(packetType, data) {
      return {
        packet_type: packetType,
        subject_id: this.agentId,
        data: data,
        client_timestamp: pythonTime(),
      };
    }

    _enqueue(packetType, data, onSent) {
      if (!this._liveWanted) this.connectLive();
      this._queue.push({ packetType, data, onSent });
      this._flush();
    }

    _isOpen() {
      return this._socket !== null && this._socket.readyState === 1 && this._socket.aliveSent;
    }

    /** Send queued packets, in order, while the socket is open. */
    _flush() {
      while (this._queue.length && this._isOpen() && this.agentId) {
        const item = this._queue.shift();
        const packet = this._packet(item.packetType, item.data);
        if (!this._write(packet)) {
          this._queue.unshift(item);
          return;
        }
        this._inFlight.push([packet, this._heartbeatsSent]);
        if (item.onSent) item.onSent(packet);
      }
    }

    _write(packet) {
      try {
        this._socket.send(JSON.stringify(packet));
        return true;
      } catch (error) {
        this._socketFailed();
        return false;
      }
    }

    _socketUrl() {
      if (this.options.socketUrl) return this.options.socketUrl;
      const page = new URL(this.baseUrl);
      return (page.protocol === "https:" ? "wss://" : "ws://") + page.host + "/";
    }

    _openSocket(isRetry) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      if (!this._liveWanted || !this.agentId) return;
      this._setConnection(isRetry ? CONNECTION.RECONNECTING : CONNECTION.CONNECTING);
      let socket;
      try {
        socket = new root.WebSocket(this._socketUrl());
      } catch (error) {
        this._scheduleReconnect();
        return;
      }
      socket.aliveSent = false;
      this._socket = socket;
      this._heartbeatsSent = 0;
      this._heartbeatsAnswered = 0;
      socket.onopen = () => {
        if (socket !== this._socket) return;
        this._reconnectAttempts = 0;
        // `alive` first, then what was sent but not known received, then the queue.
        if (!this._write(this._packet("alive", {}))) return;
        socket.aliveSent = true;
        const resend = this._inFlight;
        this._inFlight = [];
        for (const [packet] of resend) {
          if (!this._write(packet)) return;
          this._inFlight.push([packet, 0]);
        }
        this._setConnection(CONNECTION.CONNECTED);
        this._flush();
        this._firstHeartbeatTimer = setTimeout(
          () => this._heartbeat(),
          this.options.firstHeartbeatDelay
        );
        if (this._everConnected && this.options.resyncOnReconnect) this._resync();
        this._everConnected = true;
      };
      socket.onmessage = (event) => {
        if (socket !== this._socket) return;
        let packet;
        try {
          packet = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        this._receive(packet);
      };
      socket.onclose = () => {
        if (socket !== this._socket) return;
        this._socketFailed();
      };
      socket.onerror = () => {
        // onclose follows and handles it.
      };
    }

    /**
     * Updates the router sent into a socket that was already dead at this end are lost
     * with it. The backend keeps the conversation: ask for it again, exactly as a page
     * reload does, and deliver what was missed (seen ids are dropped as usual).
     */
    async _resync() {
      if (this.isOnboarding || FINAL_STATUSES.includes(this.status)) return;
      const agentId = this.agentId;
      let packet;
      try {
        packet = await this._request("POST", "/request_agent", {
          provider_data: providerData(),
          client_timestamp: pythonTime(),
        });
      } catch (error) {
        return; // the socket carries on; a later reconnection tries again
      }
      const data = (packet && packet.data) || {};
      if (data.agent_id !== agentId || agentId !== this.agentId) return;
      const past = data.init_task_data && data.init_task_data.past_live_updates;
      if (!Array.isArray(past)) return;
      for (const update of past) {
        if (update && typeof update === "object") this._liveUpdate(update);
      }
    }

    _heartbeat() {
      clearTimeout(this._heartbeatTimer);
      this._heartbeatTimer = null;
      if (!this._isOpen()) return;
      if (this._heartbeatsSent - this._heartbeatsAnswered >= this.options.missedHeartbeats) {
        this._socketFailed(); // the socket looks open but nothing comes back
        return;
      }
      if (!this._write(this._packet("heartbeat", {}))) return;
      this._heartbeatsSent += 1;
      this._heartbeatTimer = setTimeout(() => this._heartbeat(), this.options.heartbeatInterval);
    }

    _socketFailed() {
      this._dropSocket();
      if (!this._liveWanted) return;
      this._setConnection(CONNECTION.RECONNECTING);
      this._scheduleReconnect();
    }

    _dropSocket() {
      clearTimeout(this._heartbeatTimer);
      clearTimeout(this._firstHeartbeatTimer);
      this._heartbeatTimer = null;
      this._firstHeartbeatTimer = null;
      const socket = this._socket;
      this._socket = null;
      if (socket !== null) {
        socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
        try {
          socket.close();
        } catch (error) {
          // already closed
        }
      }
    }

    _scheduleReconnect() {
      if (this._reconnectTimer !== null) return;
      const ceiling = Math.min(
        this.options.reconnectMaxDelay,
        this.options.reconnectMinDelay * Math.pow(2, this._reconnectAttempts)
      );
      this._reconnectAttempts += 1;
      const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
      this._reconnectTimer = setTimeout(() => {
        this._reconnectTimer = null;
        this._openSocket(true);
      }, delay);
    }

    _receive(packet) {
      const data = packet.data || {};
      switch (packet.packet_type) {
        case "heartbeat": {
          this._heartbeatsAnswered += 1;
          // What was sent before an answered heartbeat has reached the router.
          const answered = this._heartbeatsAnswered;
          this._inFlight = this._inFlight.filter(([, index]) => index >= answered);
          if (typeof data.last_mephisto_ping === "number") {
            this.lastMephistoPing = data.last_mephisto_ping;
            const away = Date.now() - data.last_mephisto_ping > this.options.backendDeadAfter;
            this._setConnection(away ? CONNECTION.BACKEND_AWAY : CONNECTION.CONNECTED);
          }
          this._setStatus(data.status);
          break;
        }
        case "update_status":
          this._setStatus(data.status);
          break;
        case "client_bound_live_update":
          this._liveUpdate(data);
          break;
        default:
          break;
      }
    }

    _liveUpdate(update) {
      if (update.update_id !== undefined && update.update_id !== null) {
        if (this._seenUpdateIds.has(update.update_id)) return;
        this._seenUpdateIds.add(update.update_id);
      }
      if (update.handles !== undefined && this._pendingCalls.has(update.handles)) {
        const call = this._pendingCalls.get(update.handles);
        this._pendingCalls.delete(update.handles);
        clearTimeout(call.timer);
        if (update.error !== undefined && update.error !== null) {
          const message =
            typeof update.error === "string"
              ? update.error
              : (update.error && update.error.message) || JSON.stringify(update.error);
          call.reject(new RemoteError(message, call.target, update.error));
          return;
        }
        let response = update.response;
        if (typeof response === "string") {
          try {
            response = JSON.parse(response);
          } catch (error) {
            call.reject(new RemoteError("the response is not JSON text", call.target, response));
            return;
          }
        }
        call.resolve(response);
        return;
      }
      this._emit("onLiveUpdate", update, { replayed: false });
    }
  }

  function appendFiles(form, files) {
    if (typeof files.length === "number") {
      for (const file of Array.from(files)) form.append("files", file, file.name);
      return;
    }
    for (const field of Object.keys(files)) {
      const file = files[field];
      form.append(field, file, file.name);
    }
  }

  root.Architect = {
    version: PROTOCOL_VERSION,
    CONNECTION: CONNECTION,
    ArchitectError: ArchitectError,
    RemoteError: RemoteError,
    Task: Task,
    connect: function (options) {
      return new Task(options);
    },
  };
})(typeof window !== "undefined" ? window : globalThis);
