/*
 * The mock crowd provider's globals, as a task page gets them from its provider
 * script: identity from the page's URL (worker_id, assignment_id), and a
 * submit hook that records what the page handed to the provider. With
 * `?provider=none` in the URL it defines no identity globals: the client then reads
 * the URL itself (architect.js adds its per-tab id).
 */
(function () {
  "use strict";
  const params = new URLSearchParams(window.location.search);
  const identity = params.get("provider") !== "none";

  if (identity) window.getWorkerName = function () {
    return params.get("worker_id");
  };

  if (identity) window.getAssignmentId = function () {
    return params.get("assignment_id");
  };

  if (identity) window.getAgentRegistration = function () {
    const workerName = window.getWorkerName();
    const assignmentId = window.getAssignmentId();
    return {
      worker_name: workerName,
      agent_registration_id: assignmentId + "-" + workerName,
      assignment_id: assignmentId,
      provider_type: "mock",
    };
  };

  window.providerSubmissions = [];
  window.handleSubmitToProvider = function (data) {
    window.providerSubmissions.push(data);
    const note = document.createElement("p");
    note.id = "provider-submitted";
    note.textContent = "Submitted to the provider.";
    document.body.appendChild(note);
    return true;
  };
})();
