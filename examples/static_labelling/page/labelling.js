/*
 * A static task with onboarding, through architect.js. An agent id starting with
 * "onboarding" means the worker first answers the onboarding questions; passing
 * gives them a unit, failing gives a refusal whose failure_reason is shown.
 */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);

  function say(text, isError) {
    $("message").textContent = text;
    $("message").className = isError ? "notice error" : "notice";
    $("message").hidden = false;
  }

  /** Fill `fieldset` with radio buttons named `name`, one per label. */
  function labelChoices(name, labels, fieldset) {
    fieldset = fieldset || document.createElement("fieldset");
    fieldset.replaceChildren();
    for (const label of labels) {
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = name;
      radio.value = label;
      const choice = document.createElement("label");
      choice.append(radio, " " + label);
      fieldset.append(choice);
    }
    return fieldset;
  }

  function chosen(name) {
    const input = document.querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : null;
  }

  function show(task) {
    $("onboarding").hidden = true;
    $("unit").hidden = true;
    if (task.isPreview) {
      say("Preview. Open this page as /?worker_id=alice&assignment_id=1 to work on it.");
    } else if (task.isBlocked) {
      say(task.failureReason || "There is no task for you right now.", true);
    } else if (task.isOnboarding) {
      const data = task.initData;
      $("instructions").textContent = data.instructions;
      $("questions").replaceChildren();
      for (const question of data.questions) {
        const block = document.createElement("div");
        block.className = "question";
        const quote = document.createElement("blockquote");
        quote.textContent = question.text;
        block.append(quote, labelChoices(question.id, data.labels));
        $("questions").append(block);
      }
      $("onboarding").hidden = false;
    } else {
      $("message").hidden = true;
      $("text").textContent = task.initData.text;
      labelChoices("label", task.initData.labels, $("labels"));
      $("unit").hidden = false;
    }
  }

  const task = Architect.connect({
    onReady: show,
    onError: (error) => say("Could not reach the task: " + error.message, true),
  });
  window.task = task;

  $("onboarding").addEventListener("submit", async (event) => {
    event.preventDefault();
    const answers = {};
    for (const question of task.initData.questions) answers[question.id] = chosen(question.id);
    try {
      await task.submitOnboarding({ answers: answers });
      show(task); // a unit when passed; a refusal with its failure_reason when failed
    } catch (error) {
      say("The answers could not be sent: " + error.message, true);
    }
  });

  $("unit").addEventListener("submit", async (event) => {
    event.preventDefault();
    const label = chosen("label");
    if (!label) {
      say("Pick a label first.", true);
      return;
    }
    try {
      await task.submit({ label: label });
    } catch (error) {
      say("The submission failed: " + error.message, true);
      return;
    }
    $("unit").hidden = true;
    say("Submitted. Thank you!");
    // Each assignment_id is one unit for this worker: the next one is another.
    const params = new URLSearchParams(window.location.search);
    params.set("assignment_id", String(Number(params.get("assignment_id") || 0) + 1));
    $("next-link").href = "?" + params.toString();
    $("next").hidden = false;
  });
})();
