// The generator's settings: the committed description in, a fetch client out, with `.js` import
// extensions so Node.js runs the compiled journey as an ES module.
export default {
  input: "../../openapi.json",
  output: { path: "client", importFileExtension: ".js" },
  plugins: ["@hey-api/client-fetch", "@hey-api/typescript", "@hey-api/sdk"],
};
