/**
 * A `deno lint` plugin (deno.json's lint.plugins): `yak/max-function-lines`
 * reports a function in src/ (tests excepted) longer than 70 lines, counted
 * from its signature to its closing brace (TigerBeetle's limit: a function
 * that fits on a screen can be read whole). A function still over it carries
 * `// deno-lint-ignore yak/max-function-lines` until it is split, so
 * `grep -rn max-function-lines src` lists what is left.
 *
 * @module
 */

/** The longest a function in src/ may be, in lines. */
export const MAX_FUNCTION_LINES = 70;

const plugin: Deno.lint.Plugin = {
  name: "yak",
  rules: {
    "max-function-lines": {
      create(context) {
        const file = context.filename.replaceAll("\\", "/");
        if (!file.includes("/src/") || /_test\.ts$/.test(file)) return {};
        const check = (node: Deno.lint.Node) => {
          const [start, end] = node.range;
          let lines = 1;
          const text = context.sourceCode.text;
          for (let i = start; i < end; i++) if (text.charCodeAt(i) === 10) lines++;
          if (lines > MAX_FUNCTION_LINES) {
            context.report({ node, message: `function of ${lines} lines; split it (at most ${MAX_FUNCTION_LINES})` });
          }
        };
        return { FunctionDeclaration: check, FunctionExpression: check, ArrowFunctionExpression: check };
      },
    },
  },
};

export default plugin;
