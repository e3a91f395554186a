/*
 * mephisto-task's build/bundle.js is a webpack UMD library with `react` as an
 * external. Loaded by a plain <script> (no CommonJS, no AMD), it reads React
 * from the global `react` (lower case) and defines `window["mephisto-task"]`.
 * React's UMD build defines `window.React`; this names it the way the bundle looks.
 */
window.react = window.React;
