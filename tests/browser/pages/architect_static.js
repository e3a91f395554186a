/* The static task through architect.js: no framework, no build step. */
(function () {
  "use strict";
  const app = document.getElementById("app");

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    Object.assign(node, attributes || {});
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showOnboarding(task) {
    const box = element("div", { id: "onboarding" });
    box.dataset.agentId = task.agentId;
    const answer = element("input", { id: "onboarding-answer" });
    const start = element("button", { id: "onboarding-submit" }, "Start");
    start.addEventListener("click", async () => {
      start.disabled = true;
      show(await task.submitOnboarding({ answer: answer.value }));
    });
    box.append(element("p", { id: "onboarding-question" }, task.initData.question), answer, start);
    app.append(box);
  }

  function show(task) {
    app.replaceChildren();
    if (task.isBlocked) {
      app.append(element("p", { id: "blocked" }, task.failureReason));
      return;
    }
    if (task.isPreview) {
      app.append(element("p", { id: "preview" }, "Preview: open with worker_id and assignment_id."));
      return;
    }
    if (task.isOnboarding) {
      showOnboarding(task);
      return;
    }
    const box = element("div", { id: "task" });
    box.dataset.agentId = task.agentId;
    const answer = element("input", { id: "answer" });
    const submit = element("button", { id: "submit" }, "Submit");
    submit.addEventListener("click", async () => {
      submit.disabled = true;
      const reply = await task.submit({ answer: answer.value });
      app.append(element("p", { id: "submitted" }, reply.status));
    });
    box.append(element("p", { id: "unit-text" }, task.initData.text), answer, submit);
    app.append(box);
  }

  window.task = Architect.connect({
    onReady: show,
    onError: (error) => app.replaceChildren(element("p", { id: "error" }, error.message)),
  });
})();
