% rebase('base.tpl', page='login')
<section class="card narrow">
<h1>Sign in</h1>
<p class="muted">Use the token your administrator gave you (the same one scripts send as
<code>Authorization: Bearer</code>).</p>
% if error:
<p class="error-box" id="login-error">{{error}}</p>
% end
<form method="post" action="/ui/login" class="stack">
  <input type="hidden" name="_nonce" value="{{nonce}}">
  <input type="hidden" name="next" value="{{next}}">
  <label for="token">Token</label>
  <input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
  <button type="submit" class="primary" id="sign-in">Sign in</button>
</form>
</section>
